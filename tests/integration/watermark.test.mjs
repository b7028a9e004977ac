// Export watermarks on the real server (issue 6; docs/security.md
// "Watermarked exports"): generated users imported through /import; four
// exports by three access keys (GET /api/2.0/export), each carrying decoy
// subjects of its own. A shuffled 10 % sample of one export, with columns
// removed, is given to `minpanel audit trace`, which names that export (its
// key); decoys are not stored (queries do not count them), not in the
// subjects an export's audit record names, dropped when an export is
// imported again, and hidden from GET /api/audit. The project secret's
// export carries decoys too (and is traced to the secret), unless
// watermark=false, which its audit records' route says and which an access
// key may not ask. `minpanel export` of a time range carries decoys too
// (and is traced), unless --no-watermark, which its audit records' route
// says.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { hex32, runCli, startServer } from './harness.mjs';

const DAY_MS = 86400000;
const BASE_MS = Date.UTC(2026, 9, 1);  // 2026-10-01
const USERS = 300;
const NAMES = ['Viewed Page', 'Clicked', 'Signed Up', 'Purchased', 'Searched'];
const PLANS = ['free', 'pro', 'team'];
const COUNTRIES = ['DE', 'FR', 'US', 'JP', 'BR', 'IN'];

// A seeded generator, so a failure can be replayed.
function generator(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 4294967296;
  };
}

function events(random) {
  const list = [];
  for (let userIdx = 0; userIdx < USERS; userIdx += 1) {
    const user = `wm-user-${userIdx}-${hex32().slice(0, 6)}`;
    const rows = 2 + Math.floor(random() * 14);
    for (let rowIdx = 0; rowIdx < rows; rowIdx += 1) {
      list.push({
        event: NAMES[Math.floor(random() * NAMES.length)],
        properties: {
          distinct_id: user,
          time: BASE_MS + Math.floor(random() * 5 * DAY_MS),
          $insert_id: hex32(),
          plan: PLANS[Math.floor(random() * PLANS.length)],
          country: COUNTRIES[Math.floor(random() * COUNTRIES.length)],
          price: Math.floor(random() * 100),
        },
      });
    }
  }
  return list;
}

function shuffle(list, random) {
  const copy = [...list];
  for (let idx = copy.length - 1; idx > 0; idx -= 1) {
    const other = Math.floor(random() * (idx + 1));
    [copy[idx], copy[other]] = [copy[other], copy[idx]];
  }
  return copy;
}

describe('export watermarks and audit trace', () => {
  let server;
  const random = generator(20261127);
  const sent = events(random);
  const keys = {};
  const exports = [];
  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];
  const distinctIds = (rows) => new Set(rows.map((row) => row.properties.distinct_id));

  before(async () => {
    server = await startServer({ projectName: 'watermark-it' });
    for (let start = 0; start < sent.length; start += 1000) {
      const res = await server.importJson(sent.slice(start, start + 1000));
      assert.equal(res.status, 200, res.text);
    }
    for (const name of ['alice', 'bob', 'carol']) {
      const { stdout } = await runCli(['keys', 'create', '--name', name, '--project', 'watermark-it',
        '--scope', 'export', ...dataArgs()]);
      keys[name] = JSON.parse(stdout.trim());
    }
    const { stdout } = await runCli(['keys', 'create', '--name', 'auditor', '--project', 'watermark-it',
      '--scope', 'audit:read', ...dataArgs()]);
    keys.auditor = JSON.parse(stdout.trim());
    await server.reload();
    const range = { fromDate: '2026-10-01', toDate: '2026-10-05' };
    exports.push({ key: 'alice', rows: await server.exportEvents({ ...range, secret: keys.alice.secret }) });
    exports.push({ key: 'bob', rows: await server.exportEvents({ ...range, secret: keys.bob.secret }) });
    exports.push({ key: 'carol', rows: await server.exportEvents({ ...range, event: ['Viewed Page', 'Clicked'], secret: keys.carol.secret }) });
    exports.push({ key: 'alice', rows: await server.exportEvents({ fromDate: '2026-10-02', toDate: '2026-10-04', secret: keys.alice.secret }) });
  });
  after(async () => {
    if (server) {
      await server.stop();
    }
  });

  it('mixes decoy subjects of its own into each export, shaped like the real rows', async () => {
    const real = await server.exportEvents({ fromDate: '2026-10-01', toDate: '2026-10-05' });  // the secret's, watermark=false
    assert.equal(real.length, sent.length);
    const realIds = distinctIds(real);
    const seen = new Set();
    for (const { rows } of exports.slice(0, 2)) {
      const decoys = [...distinctIds(rows)].filter((id) => !realIds.has(id));
      assert.ok(decoys.length >= 3, `decoys: ${decoys.length}`);
      const decoyRows = rows.filter((row) => !realIds.has(row.properties.distinct_id));
      assert.equal(rows.length - decoyRows.length, sent.length);
      for (const row of decoyRows) {
        assert.ok(NAMES.includes(row.event), row.event);
        assert.deepEqual(Object.keys(row.properties).sort(), Object.keys(real[0].properties).sort());
        assert.match(row.properties.distinct_id, /^psn_[0-9a-f]{32}$/);
        assert.match(row.properties.$insert_id, /^[0-9a-f]{32}$/);
      }
      for (const id of decoys) {
        assert.ok(!seen.has(id), 'a decoy shared by two exports');
        seen.add(id);
      }
    }
  });

  it('names the export a shuffled 10 % fragment with columns removed came from', async () => {
    for (const [variant, drop] of [['no-distinct-id', ['distinct_id', 'plan']], ['no-insert-id', ['$insert_id', 'price', 'country']]]) {
      const leaked = shuffle(exports[1].rows, random).slice(0, Math.ceil(exports[1].rows.length / 10))
        .map((row) => {
          const properties = { ...row.properties };
          for (const column of drop) {
            delete properties[column];
          }
          return JSON.stringify({ event: row.event, properties });
        });
      const file = path.join(server.root, `leaked-${variant}.jsonl`);
      await fsp.writeFile(file, `${leaked.join('\n')}\n`);
      const { stdout } = await runCli(['audit', 'trace', file, '--json', ...dataArgs()]);
      const found = stdout.trim().split('\n').map((line) => JSON.parse(line));
      assert.equal(found[0].key, keys.bob.id, `${variant}: ${stdout}`);
      assert.ok(found[0].decoy_subjects_found + found[0].decoy_insert_ids_found > 0);
      assert.equal(found.length, 1, `${variant}: only bob's export holds its decoys: ${stdout}`);
      assert.equal(found[0].rows, sent.length);
    }
  });

  it('keeps decoys out of the store, the audit subjects and GET /api/audit', async () => {
    const query = { kind: 'segmentation', from: '2026-10-01', to: '2026-10-06', events: [{ any_event: true }], measure: 'unique', unit: 'month' };
    const ask = async () => {
      const res = await server.request({
        method: 'POST', path: '/api/query',
        headers: { ...server.authHeader(), 'Content-Type': 'application/json' }, body: JSON.stringify({ ...query, measure: 'total' }),
      });
      assert.equal(res.status, 200, res.text);
      return JSON.parse(res.text).series[0].total;
    };
    const before = await ask();
    assert.equal(before, sent.length);
    // An export imported again: its decoy rows are dropped, its real rows are duplicates.
    for (let start = 0; start < exports[0].rows.length; start += 1000) {
      const res = await server.importJson(exports[0].rows.slice(start, start + 1000));
      assert.equal(res.status, 200, res.text);
    }
    // Stored seconds ago, every real row's insert id is still in the
    // dedup window (dedup_window_hours, by the time a row was stored): not
    // one row more, decoy or real.
    assert.equal(await ask(), before);
    const audit = await server.request({ path: '/api/audit?act=export&limit=100', headers: server.authHeader(keys.auditor.secret) });
    assert.equal(audit.status, 200, audit.text);
    assert.doesNotMatch(audit.text, /"watermark"/);  // the field; a route may say watermark=false
    const records = JSON.parse(audit.text).filter((record) => record.act === 'export' && record.key === keys.bob.id);
    assert.equal(records.length, 1, audit.text);
    assert.equal(records[0].subjects, USERS, 'the record names real subjects only');
    assert.equal(records[0].rows, sent.length);
  });

  it("marks the project secret's export too, unless watermark=false, which the audit log records", async () => {
    const range = { fromDate: '2026-10-01', toDate: '2026-10-05' };
    const real = await server.exportEvents(range);  // watermark=false
    assert.equal(real.length, sent.length);
    const realIds = distinctIds(real);
    const marked = await server.exportEvents({ ...range, watermark: true });
    const decoys = [...distinctIds(marked)].filter((id) => !realIds.has(id));
    assert.ok(decoys.length >= 3, `decoys: ${decoys.length}`);
    assert.equal(marked.filter((row) => realIds.has(row.properties.distinct_id)).length, sent.length);
    // A fifth, only two columns kept: traced to the secret's export alone.
    const leaked = shuffle(marked, random).slice(0, Math.ceil(marked.length / 5))
      .map((row) => JSON.stringify({ event: row.event, properties: { distinct_id: row.properties.distinct_id, time: row.properties.time } }));
    const file = path.join(server.root, 'leaked-secret.jsonl');
    await fsp.writeFile(file, `${leaked.join('\n')}\n`);
    const { stdout } = await runCli(['audit', 'trace', file, '--json', ...dataArgs()]);
    const found = stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(found.length, 1, stdout);
    assert.equal(found[0].key, `secret:${server.project.id}`, stdout);
    assert.equal(found[0].route, '/api/2.0/export', stdout);
    assert.equal(found[0].rows, sent.length);
    // The exports without decoys say so in their records' route; they carry no watermark.
    const audit = await server.request({ path: '/api/audit?act=export&limit=1000', headers: server.authHeader(keys.auditor.secret) });
    assert.equal(audit.status, 200, audit.text);
    const plain = JSON.parse(audit.text).filter((record) => record.route === '/api/2.0/export watermark=false');
    assert.ok(plain.length >= 2, audit.text);
    assert.ok(plain.every((record) => record.key === `secret:${server.project.id}`), audit.text);
    // An access key cannot ask its decoys away; a value other than true or false is refused.
    const byKey = await server.request({
      path: '/api/2.0/export?from_date=2026-10-01&to_date=2026-10-05&watermark=false',
      headers: server.authHeader(keys.alice.secret),
    });
    assert.equal(byKey.status, 403, byKey.text);
    assert.match(JSON.parse(byKey.text).error, /^watermark: only the project secret may export without decoys/);
    const bad = await server.request({
      path: '/api/2.0/export?from_date=2026-10-01&to_date=2026-10-05&watermark=no', headers: server.authHeader(),
    });
    assert.equal(bad.status, 400, bad.text);
    assert.match(JSON.parse(bad.text).error, /^watermark: must be true or false/);
  });

  // Last: the command line needs the server stopped.
  it('marks minpanel export of a time range too, unless --no-watermark, which the audit log records', async () => {
    const real = distinctIds(await server.exportEvents({ fromDate: '2026-10-01', toDate: '2026-10-05' }));
    await server.stop();
    const cliExport = async (extra) => (await runCli(['export', '--project', 'watermark-it', '--from', '2026-10-01',
      '--to', '2026-10-05', ...extra, ...dataArgs()])).stdout.trim().split('\n').map((line) => JSON.parse(line));
    const marked = await cliExport([]);
    const decoys = [...distinctIds(marked)].filter((id) => !real.has(id));
    assert.ok(decoys.length >= 3, `decoys: ${decoys.length}`);
    // A fifth: about 2 % of the rows are decoys, so some are in it but for a chance of e^-10.
    const leaked = shuffle(marked, random).slice(0, Math.ceil(marked.length / 5))
      .map((row) => JSON.stringify({ event: row.event, properties: { distinct_id: row.properties.distinct_id, time: row.properties.time } }));
    const file = path.join(server.root, 'leaked-cli.jsonl');
    await fsp.writeFile(file, `${leaked.join('\n')}\n`);
    const { stdout } = await runCli(['audit', 'trace', file, '--json', ...dataArgs()]);
    const found = stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(found.length, 1, stdout);
    assert.equal(found[0].key, 'local', stdout);
    assert.equal(found[0].route, 'cli', stdout);
    const plain = await cliExport(['--no-watermark']);
    assert.equal(plain.length, sent.length);
    assert.deepEqual(distinctIds(plain), real);
    const audit = await runCli(['audit', 'show', '--act', 'export', '--route', 'cli --no-watermark', ...dataArgs()]);
    const records = audit.stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
    assert.deepEqual(records.map((record) => record.act).sort(), ['export', 'export.start'], audit.stdout);
    assert.ok(records.every((record) => record.key === 'local' && !record.watermark), audit.stdout);
  });
});
