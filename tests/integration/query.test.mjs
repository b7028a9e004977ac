// Queries on the real server: events sent through /import (so through the
// privacy policy and the write-ahead log), then POST /api/query for
// segmentation, a funnel and retention; the same answers after a restart
// (log replay) and from `minpanel query` on the command line; clear 4xx
// answers for a bad query, a wrong secret and a wrong method; the any_event
// selector; the export of a list of users (POST /api/2.0/export with
// distinct_ids) against the single-user export, over the server and from
// `minpanel export --distinct-ids`.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { hex32, parseJsonLines, runCli, startServer } from './harness.mjs';

const DAY_MS = 86400000;
const BASE_MS = Date.UTC(2026, 9, 1);  // 2026-10-01, a UTC midnight
const at = (day, hour) => BASE_MS + day * DAY_MS + hour * 3600000;

// Four generated users over three days:
//   u1 signs up on day 0, activates on day 0, buys on day 1 (plan pro);
//   u2 signs up on day 0, activates on day 2 (plan free);
//   u3 signs up on day 1 and never comes back (plan pro);
//   u4 only browses.
function events() {
  const event = (name, user, timeMs, properties = {}) => ({
    event: name,
    properties: { distinct_id: user, time: timeMs, $insert_id: hex32(), ...properties },
  });
  return [
    event('Signed Up', 'u1', at(0, 9), { plan: 'pro' }),
    event('Activated', 'u1', at(0, 10)),
    event('Purchased', 'u1', at(1, 12), { price: 30 }),
    event('Signed Up', 'u2', at(0, 11), { plan: 'free' }),
    event('Activated', 'u2', at(2, 8)),
    event('Signed Up', 'u3', at(1, 15), { plan: 'pro' }),
    event('Viewed Page', 'u4', at(0, 1)),
    event('Viewed Page', 'u4', at(2, 1)),
  ];
}

const SEGMENTATION = {
  kind: 'segmentation', from: '2026-10-01', to: '2026-10-04', unit: 'day',
  events: ['Signed Up'], measure: 'unique', breakdown: { properties: ['plan'] },
};
const FUNNEL = {
  kind: 'funnel', from: '2026-10-01', to: '2026-10-04',
  steps: ['Signed Up', 'Activated', 'Purchased'], window: { value: 7, unit: 'day' },
};
const RETENTION = {
  kind: 'retention', from: '2026-10-01', to: '2026-10-04', birth: 'Signed Up', return: 'Activated',
  unit: 'day', periods: 2, mode: 'on',
};

describe('POST /api/query and minpanel query', () => {
  let server;
  const ask = async (query, { headers = server.authHeader(), method = 'POST' } = {}) => server.request({
    method,
    path: '/api/query',
    headers: { ...headers, 'Content-Type': 'application/json' },
    body: method === 'POST' ? JSON.stringify(query) : undefined,
  });
  // The answer without `stats` (segments and blocks read), which depend on
  // how the store holds the events at the moment, not on the events.
  const answer = async (query) => {
    const res = await ask(query);
    assert.equal(res.status, 200, res.text);
    const { stats, ...result } = JSON.parse(res.text);
    return result;
  };

  before(async () => {
    server = await startServer({ projectName: 'query-it' });
    const res = await server.importJson(events());
    assert.equal(res.status, 200, res.text);
  });
  after(async () => {
    if (server) {
      await server.stop();
    }
  });

  it('answers segmentation with a breakdown', async () => {
    const result = await answer(SEGMENTATION);
    assert.equal(result.kind, 'segmentation');
    assert.deepEqual(result.buckets, ['2026-10-01', '2026-10-02', '2026-10-03']);
    const totals = result.series.map((series) => series.values);
    // pro: u1 on day 0, u3 on day 1; free: u2 on day 0.
    assert.equal(result.series.length, 2, JSON.stringify(result));
    assert.deepEqual(totals.sort(), [[1, 0, 0], [1, 1, 0]].sort(), JSON.stringify(result));
  });

  it('compares with the previous period: the answer for the range of the same length just before', async () => {
    // 2026-10-02 .. 10-04 and, before it, the two days 09-30 .. 10-02,
    // which hold the sign-ups of 10-01.
    const query = { ...SEGMENTATION, from: '2026-10-02', to: '2026-10-04', compare: 'previous_period' };
    const { previous, ...current } = await answer(query);
    const { compare, ...alone } = query;
    assert.deepEqual(current, await answer(alone));
    const length = current.to_ms - current.from_ms;
    assert.equal(previous.to_ms, current.from_ms);
    assert.equal(previous.from_ms, current.from_ms - length);
    const { stats, ...before } = previous;
    assert.deepEqual(before, await answer({ ...alone, from: previous.from_ms, to: previous.to_ms }));
    assert.ok(before.series.length > 0, JSON.stringify(before));
    const refused = await ask({ ...query, compare: 'last_year' });
    assert.equal(refused.status, 400);
    assert.match(JSON.parse(refused.text).error, /^compare: expected "previous_period"/);
  });

  it('answers a funnel', async () => {
    const result = await answer(FUNNEL);
    assert.deepEqual(result.steps.map((step) => step.subjects), [3, 2, 1], JSON.stringify(result));
    assert.equal(result.steps[1].median_ms, 3600000);  // u1: 1 h; u2: 45 h; nearest rank of 2 is the first
  });

  it('answers retention', async () => {
    const result = await answer(RETENTION);
    // Day 0 cohort: u1 (activated on day 0), u2 (day 2); day 1 cohort: u3.
    assert.deepEqual(result.cohorts.map((cohort) => cohort.size), [2, 1, 0], JSON.stringify(result));
    assert.deepEqual(result.cohorts[0].counts, [1, 0, 1], JSON.stringify(result));
  });

  it('refuses a bad query, a wrong secret and GET with clear errors', async () => {
    const bad = await ask({ ...FUNNEL, steps: ['Signed Up'] });
    assert.equal(bad.status, 400, bad.text);
    assert.match(bad.text, /steps/);
    const unknownOp = await ask({ ...SEGMENTATION, filters: [{ property: 'plan', op: 'equals', value: 'pro' }] });
    assert.equal(unknownOp.status, 400, unknownOp.text);
    assert.match(unknownOp.text, /filters\[0\]\.op/);
    const notJson = await server.request({
      method: 'POST', path: '/api/query', headers: server.authHeader(), body: '{"kind":',
    });
    assert.equal(notJson.status, 400, notJson.text);
    const wrongSecret = await ask(SEGMENTATION, { headers: server.authHeader('not-the-secret') });
    assert.equal(wrongSecret.status, 401, wrongSecret.text);
    const noSecret = await ask(SEGMENTATION, { headers: {} });
    assert.equal(noSecret.status, 401, noSecret.text);
    const get = await ask(SEGMENTATION, { method: 'GET' });
    assert.equal(get.status, 405, get.text);
    assert.equal(get.headers.allow, 'POST');
  });

  it('counts unique users across every event with any_event', async () => {
    const result = await answer({
      kind: 'segmentation', from: '2026-10-01', to: '2026-10-04', unit: 'day',
      events: [{ any_event: true }], measure: 'unique',
    });
    // Day 0: u1, u2, u4; day 1: u1, u3; day 2: u2, u4. All four over the range.
    assert.deepEqual(result.series, [{ any_event: true, values: [3, 2, 2], total: 4 }]);
  });

  // POST /api/2.0/export with a form body.
  const exportList = (fields, { headers = server.authHeader(), query = '' } = {}) => server.request({
    method: 'POST',
    path: `/api/2.0/export${query}`,
    headers: { ...headers, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ from_date: '2026-10-01', to_date: '2026-10-03', ...fields }).toString(),
  });
  const insertIds = (rows) => rows.map((row) => row.properties.$insert_id).sort();

  it('exports the events of a list of users, as the single-user export finds them', async () => {
    const res = await exportList({ distinct_ids: JSON.stringify(['u4', 'u1', 'nobody', 'u1']) });
    assert.equal(res.status, 200, res.text);
    const rows = parseJsonLines(res.text);
    const u1 = await server.exportEvents({ fromDate: '2026-10-01', toDate: '2026-10-03', distinctId: 'u1' });
    const u4 = await server.exportEvents({ fromDate: '2026-10-01', toDate: '2026-10-03', distinctId: 'u4' });
    assert.equal(u1.length, 3);
    assert.equal(u4.length, 2);
    assert.deepEqual(insertIds(rows), insertIds([...u1, ...u4]));
    // One user's events in time order (one segment or the memtable here).
    const times = rows.filter((row) => row.properties.distinct_id === u1[0].properties.distinct_id)
      .map((row) => row.properties.time);
    assert.deepEqual(times, [...times].sort((left, right) => left - right));
    // The other parameters still apply.
    const purchases = await exportList({ distinct_ids: '["u1","u2"]', event: '["Purchased"]' });
    assert.equal(parseJsonLines(purchases.text).length, 1, purchases.text);
    const none = await exportList({ distinct_ids: '[]' });
    assert.equal(none.status, 200, none.text);
    assert.equal(none.text, '');
  });

  it('refuses a bad list of users naming the field and the limit', async () => {
    const tooMany = await exportList({
      distinct_ids: JSON.stringify(Array.from({ length: 10001 }, (_, idx) => `user-${idx}`)),
    });
    assert.equal(tooMany.status, 400, tooMany.text);
    assert.match(tooMany.text, /distinct_ids: 10001 ids, over the limit of 10000 \(kExportDistinctIdsMax\)/);
    const both = await exportList({ distinct_ids: '["u1"]', distinct_id: 'u2' });
    assert.equal(both.status, 400, both.text);
    assert.match(both.text, /distinct_ids: give either distinct_id or distinct_ids/);
    const notArray = await exportList({ distinct_ids: '"u1"' });
    assert.equal(notArray.status, 400, notArray.text);
    assert.match(notArray.text, /distinct_ids: expected a JSON array/);
    const inUrl = await server.request({
      path: `/api/2.0/export?from_date=2026-10-01&to_date=2026-10-03&distinct_ids=${encodeURIComponent('["u1"]')}`,
      headers: server.authHeader(),
    });
    assert.equal(inUrl.status, 400, inUrl.text);
    assert.match(inUrl.text, /distinct_ids: send it in a POST form body/);
    const json = await server.request({
      method: 'POST', path: '/api/2.0/export?from_date=2026-10-01&to_date=2026-10-03',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' }, body: '{}',
    });
    assert.equal(json.status, 400, json.text);
    assert.match(json.text, /Content-Type/);
    const wrongSecret = await exportList({ distinct_ids: '["u1"]' }, { headers: server.authHeader('nope') });
    assert.equal(wrongSecret.status, 401, wrongSecret.text);
  });

  it('gives the same answers after a restart and on the command line', async () => {
    const before = await Promise.all([SEGMENTATION, FUNNEL, RETENTION].map(answer));
    await server.restart();
    const afterRestart = await Promise.all([SEGMENTATION, FUNNEL, RETENTION].map(answer));
    assert.deepEqual(afterRestart, before);
    await server.stop();
    const file = path.join(server.root, 'funnel.json');
    await fsp.writeFile(file, JSON.stringify(FUNNEL));
    const { stdout } = await runCli(['query', file, '--project', 'query-it', '--data', server.dataDir,
      '--keys', server.keysDir]);
    const { stats, ...fromCli } = JSON.parse(stdout);
    assert.deepEqual(fromCli, before[1]);
    // minpanel export --distinct-ids FILE: the same events as the server's list export.
    const ids = path.join(server.root, 'ids.txt');
    await fsp.writeFile(ids, 'u1\n\nu3\n');
    const exported = await runCli(['export', '--project', 'query-it', '--from', '2026-10-01',
      '--to', '2026-10-03', '--distinct-ids', ids, '--data', server.dataDir, '--keys', server.keysDir]);
    await server.start();
    const res = await exportList({ distinct_ids: '["u1","u3"]' });
    assert.equal(parseJsonLines(exported.stdout).length, 4, exported.stdout);
    assert.deepEqual(insertIds(parseJsonLines(exported.stdout)), insertIds(parseJsonLines(res.text)));
  });
});
