// k-suppression on the real server (issue 6; docs/queries.md "Small
// groups"): a project's minimum group size set with `minpanel project
// set-min-group-size`, keys made with `minpanel keys create
// [--min-group-size K]` and POST /api/keys, taken on SIGHUP; generated
// users imported through /import. An aggregate key gets small cells
// withheld (with a complementary group), a key's own k raises the
// project's, a key with query:subjects is held to no k unless it sets one,
// the project secret sees everything, and a population under k shows
// nothing. `minpanel query` on the command line is held to the project's
// k too, unless --no-k, which its audit records' route says.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { hex32, runCli, startServer } from './harness.mjs';

const DAY_MS = 86400000;
const BASE_MS = Date.UTC(2026, 9, 1);  // 2026-10-01, a UTC midnight

// 20 generated users sign up on day 0: 12 on plan pro, 6 free, 2 team;
// each activates an hour later.
function events() {
  const plans = [...Array(12).fill('pro'), ...Array(6).fill('free'), ...Array(2).fill('team')];
  const list = [];
  plans.forEach((plan, userIdx) => {
    const user = `ks-user-${userIdx}-${hex32().slice(0, 8)}`;
    const time = BASE_MS + 9 * 3600000 + userIdx * 60000;
    list.push({ event: 'Signed Up', properties: { distinct_id: user, time, $insert_id: hex32(), plan } });
    list.push({ event: 'Activated', properties: { distinct_id: user, time: time + 3600000, $insert_id: hex32() } });
  });
  return list;
}

const SEGMENTATION = {
  kind: 'segmentation', from: '2026-10-01', to: '2026-10-02', unit: 'day',
  events: ['Signed Up'], measure: 'total', breakdown: { properties: ['plan'] },
};
const FUNNEL = {
  kind: 'funnel', from: '2026-10-01', to: '2026-10-02', steps: ['Signed Up', 'Activated'], breakdown: 'plan',
};

// The series (or funnel groups) by plan: { pro: value, free: value, ... }.
const byPlan = (answer) => Object.fromEntries(
  (answer.series || answer.groups).map((part) => [part.breakdown[0], part.values ? part.values[0] : part.steps[0].subjects]),
);

describe('k-suppression over HTTP', () => {
  let server;
  const keys = {};
  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];
  const ask = async (query, secret) => {
    const res = await server.request({
      method: 'POST', path: '/api/query',
      headers: { ...server.authHeader(secret), 'Content-Type': 'application/json' },
      body: JSON.stringify(query),
    });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text);
  };

  before(async () => {
    server = await startServer({ projectName: 'ksuppress-it' });
    const res = await server.importJson(events());
    assert.equal(res.status, 200, res.text);
    await runCli(['project', 'set-min-group-size', 'ksuppress-it', '5', ...dataArgs()]);
    const key = async (name, args) => {
      const { stdout } = await runCli(['keys', 'create', '--name', name, '--project', 'ksuppress-it', ...args, ...dataArgs()]);
      return JSON.parse(stdout.trim()).secret;
    };
    keys.aggregate = await key('aggregate', ['--scope', 'query:aggregate']);
    keys.raised = await key('raised', ['--scope', 'query:aggregate', '--min-group-size', '10']);
    keys.lowered = await key('lowered', ['--scope', 'query:aggregate', '--min-group-size', '2']);
    keys.subjects = await key('subjects', ['--scope', 'query:aggregate', '--scope', 'query:subjects']);
    keys.subjectsHeld = await key('subjects-held',
      ['--scope', 'query:aggregate', '--scope', 'query:subjects', '--min-group-size', '3']);
    await server.reload();
  });
  after(async () => {
    if (server) {
      await server.stop();
    }
  });

  it('shows the project secret every cell', async () => {
    const answer = await ask(SEGMENTATION);
    assert.equal(answer.min_group_size, undefined, JSON.stringify(answer));
    assert.deepEqual(byPlan(answer), { pro: 12, free: 6, team: 2 });
  });

  it('withholds a small group and its complement from an aggregate key', async () => {
    const answer = await ask(SEGMENTATION, keys.aggregate);
    assert.equal(answer.min_group_size, 5);
    // team (2) is under 5; free (6) goes with it, else team = total - pro - free.
    assert.deepEqual(byPlan(answer), { pro: 12, free: null, team: null }, JSON.stringify(answer));
    const team = answer.series.find((series) => series.breakdown[0] === 'team');
    assert.deepEqual(team.suppressed, [0]);
    assert.equal(team.total_suppressed, true);
    assert.equal(answer.suppressed_cells, 4);
    const funnel = await ask(FUNNEL, keys.aggregate);
    assert.deepEqual(funnel.steps.map((step) => step.subjects), [20, 20], JSON.stringify(funnel));
    assert.deepEqual(byPlan(funnel), { pro: 12, free: null, team: null }, JSON.stringify(funnel));
    const teamSteps = funnel.groups.find((group) => group.breakdown[0] === 'team').steps;
    assert.equal(teamSteps[1].suppressed, true);
    assert.equal(teamSteps[1].step_conversion, null);
    assert.equal(teamSteps[1].median_ms, null);
  });

  it('raises k with a key of its own, never lowers it', async () => {
    const raised = await ask(FUNNEL, keys.raised);
    assert.equal(raised.min_group_size, 10);
    // free and team hold 8 < 10 together: pro is withheld too; everyone (20) stays.
    assert.deepEqual(byPlan(raised), { pro: null, free: null, team: null }, JSON.stringify(raised));
    assert.equal(raised.steps[0].subjects, 20);
    const lowered = await ask(SEGMENTATION, keys.lowered);
    assert.equal(lowered.min_group_size, 5);
  });

  it('holds a query:subjects key to no k unless the key sets one', async () => {
    const free = await ask(SEGMENTATION, keys.subjects);
    assert.equal(free.min_group_size, undefined);
    assert.deepEqual(byPlan(free), { pro: 12, free: 6, team: 2 });
    const held = await ask(SEGMENTATION, keys.subjectsHeld);
    assert.equal(held.min_group_size, 5);  // its own 3, raised to the project's 5
    assert.deepEqual(byPlan(held), { pro: 12, free: null, team: null });
  });

  it('shows nothing of a population under k', async () => {
    const answer = await ask({
      ...SEGMENTATION, breakdown: undefined, filters: [{ property: 'plan', op: 'eq', value: 'team' }],
    }, keys.aggregate);
    assert.deepEqual(answer.series[0].values, [null]);
    assert.equal(answer.series[0].total, null);
    // Zero looks the same as a small count: no one on plan 'enterprise'.
    const none = await ask({
      ...SEGMENTATION, breakdown: undefined, filters: [{ property: 'plan', op: 'eq', value: 'enterprise' }],
    }, keys.aggregate);
    assert.deepEqual(none.series[0].values, [null]);
  });

  it('refuses a key k over the limit, naming the field', async () => {
    const res = await server.request({
      method: 'POST', path: '/api/keys',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'too-big', scopes: ['query:aggregate'], min_group_size: 1001 }),
    });
    assert.equal(res.status, 400, res.text);
    assert.match(res.text, /min_group_size.*kMinGroupSizeMax/);
    const made = await server.request({
      method: 'POST', path: '/api/keys',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'held', scopes: ['query:aggregate'], min_group_size: 7 }),
    });
    assert.equal(made.status, 201, made.text);
    const { secret, min_group_size: k } = JSON.parse(made.text);
    assert.equal(k, 7);
    const answer = await ask(SEGMENTATION, secret);
    assert.equal(answer.min_group_size, 7);
  });

  // Last: the command line needs the server stopped.
  it('holds minpanel query to the project k unless --no-k, which the audit log records', async () => {
    await server.stop();
    const file = path.join(server.root, 'ksuppress-query.json');
    await fsp.writeFile(file, JSON.stringify(SEGMENTATION));
    const cliQuery = async (extra) => JSON.parse((await runCli(
      ['query', file, '--project', 'ksuppress-it', ...extra, ...dataArgs()])).stdout);
    const held = await cliQuery([]);
    assert.equal(held.min_group_size, 5);
    assert.deepEqual(byPlan(held), { pro: 12, free: null, team: null }, JSON.stringify(held));
    const funnel = path.join(server.root, 'ksuppress-funnel.json');
    await fsp.writeFile(funnel, JSON.stringify(FUNNEL));
    const heldFunnel = JSON.parse((await runCli(
      ['query', funnel, '--project', 'ksuppress-it', ...dataArgs()])).stdout);
    assert.deepEqual(byPlan(heldFunnel), { pro: 12, free: null, team: null }, JSON.stringify(heldFunnel));
    const raw = await cliQuery(['--no-k']);
    assert.equal(raw.min_group_size, undefined);
    assert.deepEqual(byPlan(raw), { pro: 12, free: 6, team: 2 });
    const routes = async (route) => (await runCli(['audit', 'show', '--act', 'query', '--route', route,
      '--limit', '100', ...dataArgs()])).stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
    const rawRecords = await routes('cli --no-k');
    // One `query` record each (after a `query.start` when it ran past audit_query_start_ms).
    const closes = (records) => records.filter((record) => record.act === 'query').length;
    assert.equal(closes(rawRecords), 1, JSON.stringify(rawRecords));
    assert.ok(rawRecords.every((record) => record.act === 'query' || record.act === 'query.start'));
    assert.ok(rawRecords.every((record) => record.key === 'local'));
    assert.equal(closes(await routes('cli')), 2);
  });
});
