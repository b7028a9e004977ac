// Queries on the real server: events sent through /import (so through the
// privacy policy and the write-ahead log), then POST /api/query for
// segmentation, a funnel and retention; the same answers after a restart
// (log replay) and from `minpanel query` on the command line; clear 4xx
// answers for a bad query, a wrong secret and a wrong method.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { hex32, runCli, startServer } from './harness.mjs';

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
    await server.start();
  });
});
