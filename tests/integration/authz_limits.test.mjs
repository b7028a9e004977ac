// Per-key rate limits and export quotas on the real server (issue 6;
// docs/security.md, "Rate limits and export quotas"): a key over its rate is
// answered 429 with Retry-After and a message naming the limit; a key's
// export is cut at its rows per day and the next refused (429, Retry-After
// to midnight UTC); the quota and its cut count real rows, never the
// watermark's decoys; the subject quota refuses the export after the one that
// crossed it; a key without limits of its own takes the server's default;
// `minpanel keys create --rate … --json` prints the key alone.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { clearOfMidnight, hex32, isoDate, nowSeconds, parseJsonLines, runCli, sleep, startServer } from './harness.mjs';

const USERS = 12;

describe('per-key rate limits and export quotas', () => {
  let server;
  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];

  const createKey = async (spec) => {
    const res = await server.request({
      method: 'POST', path: '/api/keys', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ project_id: server.project.id, ...spec }),
    });
    assert.equal(res.status, 201, res.text);
    return JSON.parse(res.text);
  };
  const exportWith = (secret, event) => server.request({
    method: 'GET',
    path: `/api/2.0/export?from_date=${isoDate(-3)}&to_date=${isoDate(1)}&reason=quota%20test${event ? `&event=${encodeURIComponent(JSON.stringify([event]))}` : ''}`,
    headers: server.authHeader(secret),
  });
  // The rows of an export that are stored ones (by insert id), not decoys.
  const realRows = (rows, stored) => rows.filter((row) => stored.has(row.properties.$insert_id));
  const storedInsertIds = async (event) => new Set((await server.exportEvents({ event: event ? [event] : undefined }))
    .map((row) => row.properties.$insert_id));
  const query = (secret) => server.request({
    method: 'POST', path: '/api/query', headers: server.authHeader(secret),
    body: JSON.stringify({ kind: 'segmentation', from: '-3d', to: 'now', events: ['limited'] }),
  });

  before(async () => {
    server = await startServer({ projectName: 'limits-it', configText: '[limits]\nkey_requests_per_second = 4\n' });
    const events = [];
    for (let user = 0; user < USERS; user += 1) {
      for (let repeat = 0; repeat < 3; repeat += 1) {
        events.push({ event: 'limited', properties: { distinct_id: `generated-${user}`, time: nowSeconds(), $insert_id: hex32() } });
      }
    }
    const res = await server.importJson(events);
    assert.equal(res.status, 200, res.text);
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('a key over its rate gets 429 with Retry-After naming the rate', async () => {
    const key = await createKey({ name: 'slow', scopes: ['query:aggregate'], rate: 2 });
    assert.equal(key.rate, 2);
    const statuses = [];
    let refused = null;
    for (let request = 0; request < 6; request += 1) {
      const res = await query(key.secret);
      statuses.push(res.status);
      if (res.status === 429 && refused === null) {
        refused = res;
      }
    }
    assert.equal(statuses[0], 200);
    assert.ok(refused, `no 429 among ${statuses}`);
    assert.ok(Number(refused.headers['retry-after']) >= 1, JSON.stringify(refused.headers));
    assert.match(JSON.parse(refused.text).error, /over its limit of 2 requests per second \(rate\)/);
    await sleep(1100);
    assert.equal((await query(key.secret)).status, 200);
  });

  it('a key without its own rate takes the server default', async () => {
    const key = await createKey({ name: 'default-rate', scopes: ['query:aggregate'] });
    const statuses = [];
    for (let request = 0; request < 8; request += 1) {
      statuses.push((await query(key.secret)).status);
    }
    assert.ok(statuses.includes(429), `no 429 under the default of 4/s: ${statuses}`);
    // The project secret is not an access key: not limited.
    for (let request = 0; request < 8; request += 1) {
      assert.equal((await query()).status, 200);
    }
  });

  // The quotas are per UTC day: each quota test keeps its exports in one
  // (clearOfMidnight), or the day could turn between the export that uses
  // the quota up and the one that should be refused.
  it('an export is cut at the rows left today, then refused', async () => {
    await clearOfMidnight();
    const key = await createKey({ name: 'rows', scopes: ['export'], export_rows_per_day: 10 });
    const first = await exportWith(key.secret);
    assert.equal(first.status, 200, first.text);
    // Ten real rows; decoys, if any sort among them, on top.
    assert.equal(realRows(parseJsonLines(first.text), await storedInsertIds()).length, 10);
    const second = await exportWith(key.secret);
    assert.equal(second.status, 429, second.text);
    assert.match(JSON.parse(second.text).error, /export_rows_per_day/);
    const retryAfter = Number(second.headers['retry-after']);
    assert.ok(retryAfter >= 1 && retryAfter <= 86400, second.headers['retry-after']);
  });

  it('the export that crosses the subject quota completes; the next is refused', async () => {
    await clearOfMidnight();
    const key = await createKey({ name: 'subjects', scopes: ['export'], export_subjects_per_day: 3 });
    const first = await exportWith(key.secret);
    assert.equal(first.status, 200, first.text);
    // Every stored row, and the export's watermark decoys if any.
    assert.ok(parseJsonLines(first.text).length >= USERS * 3);
    const second = await exportWith(key.secret);
    assert.equal(second.status, 429, second.text);
    assert.match(JSON.parse(second.text).error, /export_subjects_per_day/);
  });

  it('the quota and its cut count real rows: two exports\' worth is two whole exports, decoys on top', async () => {
    // 200 subjects of one row each: an export carries at least 3 decoy
    // subjects spread among them. Were decoys counted in the quota, the
    // second export would be cut short of real rows; were the cut counted
    // in lines, the decoys before it would take real rows' places.
    await clearOfMidnight();
    const name = 'quota-pair';
    const events = [];
    for (let user = 0; user < 200; user += 1) {
      events.push({ event: name, properties: { distinct_id: `generated-pair-${user}`, time: nowSeconds(), $insert_id: hex32() } });
    }
    const imported = await server.importJson(events);
    assert.equal(imported.status, 200, imported.text);
    const stored = await storedInsertIds(name);
    assert.equal(stored.size, 200);
    const key = await createKey({ name: 'pair', scopes: ['export'], export_rows_per_day: 400 });
    for (const attempt of [1, 2]) {
      const res = await exportWith(key.secret, name);
      assert.equal(res.status, 200, res.text);
      const rows = parseJsonLines(res.text);
      const real = realRows(rows, stored);
      assert.equal(new Set(real.map((row) => row.properties.$insert_id)).size, 200, `export ${attempt}: ${real.length} real rows`);
      assert.ok(rows.length > real.length, `export ${attempt} carries no decoys`);
    }
    const third = await exportWith(key.secret, name);
    assert.equal(third.status, 429, third.text);
    assert.match(JSON.parse(third.text).error, /has exported its 400 rows of today \(UTC\) \(export_rows_per_day\)/);
  });

  it('keys create --json prints the key with its limits and nothing else', async () => {
    const { stdout, stderr } = await runCli(['keys', 'create', '--name', 'cli-limited', '--project', 'limits-it',
      '--scope', 'export', '--rate', '7', '--export-rows-per-day', '5', '--json', ...dataArgs()]);
    assert.doesNotMatch(stderr, /shown once/);
    const key = JSON.parse(stdout.trim());
    assert.equal(key.rate, 7);
    assert.equal(key.export_rows_per_day, 5);
    assert.equal(key.export_subjects_per_day, 0);
    process.kill(server.pid, 'SIGHUP');
    for (let attempt = 0; attempt < 100; attempt += 1) {
      const res = await exportWith(key.secret);
      if (res.status !== 401) {
        assert.equal(res.status, 200, res.text);
        assert.equal(realRows(parseJsonLines(res.text), await storedInsertIds()).length, 5);
        return;
      }
      await sleep(50);
    }
    assert.fail('the key made by the command line was not taken on SIGHUP');
  });
});
