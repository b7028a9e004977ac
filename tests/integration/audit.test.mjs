// The audit log on the real server (issue 6; docs/formats/audit.md): every
// answered query has its query record of what left (with what it asked, or
// after its query.start when it ran longer than audit_query_start_ms),
// durable before the answer left; a kill -9
// in the middle of many appends leaves a chain that `minpanel audit verify`
// accepts and the restarted server continues, and verify catches an edited
// byte and a dropped record, naming the record.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { hex32, httpRequest, nowSeconds, runCli, sleep, startServer } from './harness.mjs';

const QUERY = JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: ['audited'] });

describe('audit log', () => {
  let server;
  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];
  const verify = async () => {
    try {
      const { stdout } = await runCli(['audit', 'verify', ...dataArgs()]);
      return { code: 0, stdout };
    } catch (error) {
      return { code: error.code, stdout: error.stdout };
    }
  };
  const show = async (act) => {
    const { stdout } = await runCli(['audit', 'show', '--act', act, '--limit', '10000', ...dataArgs()]);
    return stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
  };

  before(async () => {
    server = await startServer({ projectName: 'audit-it' });
    const res = await server.importJson([{ event: 'audited', properties: { distinct_id: 'generated-7', time: nowSeconds(), $insert_id: hex32() } }]);
    assert.equal(res.status, 200, res.text);
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('a kill -9 among many appends: every answered query is recorded and the chain verifies', async () => {
    // `audit show --act query` matches query.start and query records and
    // keeps the newest kShowRecordsMax (10,000): past 5,000 queries the
    // counts below would read a window, not the log. The kill comes at
    // 1.5 s or at the last query sent, whichever is first, so it still
    // lands among appends.
    const queriesMax = 4000;
    let answered = 0;
    let sent = 0;
    let stop = false;
    let lastSent;
    const allSent = new Promise((resolve) => { lastSent = resolve; });
    const worker = async () => {
      while (!stop) {
        if (sent >= queriesMax) {
          lastSent();
          return;
        }
        sent += 1;
        const res = await server.request({ method: 'POST', path: '/api/query', headers: server.authHeader(), body: QUERY })
          .catch(() => null);
        if (res === null) {
          return;
        }
        if (res.status === 200) {
          answered += 1;
        }
      }
    };
    const workers = Array.from({ length: 16 }, worker);
    await Promise.race([sleep(1500), allSent]);
    process.kill(server.pid, 'SIGKILL');
    stop = true;
    await Promise.all(workers);
    await sleep(200);
    assert.ok(answered > 20, `queries answered before the kill: ${answered}`);
    const verified = await verify();
    assert.equal(verified.code, 0, verified.stdout);
    // Each answered query has one `query` record: the whole of it, or the
    // close of its `query.start` (a query that ran past audit_query_start_ms).
    const ends = async () => (await show('query')).filter((entry) => entry.act === 'query').length;
    const ended = await ends();
    assert.ok(ended >= answered, `query records ${ended} >= answered ${answered}`);
    assert.ok(ended >= answered, `query records ${ended} >= answered ${answered}`);
    const log = path.join(server.dataDir, 'audit', 'log');
    const bytesBefore = (await fsp.stat(log)).size;
    await server.start();
    const res = await server.request({ method: 'POST', path: '/api/query', headers: server.authHeader(), body: QUERY });
    assert.equal(res.status, 200, res.text);
    await server.stop();
    const again = await verify();
    assert.equal(again.code, 0, again.stdout);
    // What the next look needs if a count is off (seen once, not reproduced
    // in 50 runs): the counts, the log's bytes, both verifies, the newest
    // records and the files beside the log.
    const context = async () => {
      const newest = (await show('')).slice(-6).map((entry) => `${entry.seq} ${entry.act} ${entry.route}`);
      return `answered ${answered} of ${sent}; log ${bytesBefore} -> ${(await fsp.stat(log)).size} bytes; ` +
        `verify after the kill: ${verified.stdout.trim()}; after the restart: ${again.stdout.trim()}; ` +
        `newest records: ${newest.join(' | ')}; audit folder: ${(await fsp.readdir(path.dirname(log))).join(',')}; ` +
        `exits: ${JSON.stringify(server.exits)}; stderr tail: ${server.stderr.slice(-1500)}`;
    };
    const endsAfter = await ends();
    if (endsAfter !== ended + 1) {
      assert.fail(`query records ${ended} -> ${endsAfter}, expected one more; ${await context()}`);
    }
  });

  it('a kill -9 among subject-listing queries: every answered one names a whole subject file', async () => {
    // Each answer lists subjects (a breakdown by distinct_id), so its
    // `query` record names a subject file, written in place (no temporary
    // file, no rename) and synced before the record is queued, the record
    // durable before the answer leaves (docs/formats/audit.md, "Subject
    // files"). A kill -9 at any point may leave a file no record names,
    // never a record whose file is missing or torn: verify checks every
    // file a record names against its SHA-256. (A kill -9 keeps the page
    // cache: what it tests is the order of the writes, not the fsyncs.)
    await server.start();
    const listed = Array.from({ length: 40 }, (_, index) => ({
      event: 'listed', properties: { distinct_id: `generated-listed-${index}`, time: nowSeconds(), $insert_id: hex32() },
    }));
    const imported = await server.importJson(listed);
    assert.equal(imported.status, 200, imported.text);
    const body = JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: ['listed'],
      breakdown: { properties: ['distinct_id'], limit: 50 } });
    let answered = 0;
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const res = await server.request({ method: 'POST', path: '/api/query', headers: server.authHeader(), body })
          .catch(() => null);
        if (res === null) {
          return;
        }
        if (res.status === 200) {
          assert.equal(JSON.parse(res.text).series.length, 40);
          answered += 1;
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    await sleep(800 + Math.random() * 700);
    process.kill(server.pid, 'SIGKILL');
    stop = true;
    await Promise.all(workers);
    await sleep(200);
    assert.ok(answered > 5, `subject-listing queries answered before the kill: ${answered}`);
    const verified = await verify();
    assert.equal(verified.code, 0, verified.stdout);
    const withFiles = (await show('query')).filter((entry) => entry.act === 'query' && entry.subjects_file);
    assert.ok(withFiles.length >= answered, `query records with a subject file ${withFiles.length} >= answered ${answered}`);
    const files = new Set(await fsp.readdir(path.join(server.dataDir, 'audit', 'subjects')));
    for (const entry of withFiles) {
      assert.equal(entry.subjects, 40, JSON.stringify(entry));
      assert.ok(files.has(path.basename(entry.subjects_file)), entry.subjects_file);
    }
    assert.ok([...files].every((name) => !name.endsWith('.tmp')), 'no temporary files');
    // The restarted server goes on naming fresh files.
    await server.start();
    const res = await server.request({ method: 'POST', path: '/api/query', headers: server.authHeader(), body });
    assert.equal(res.status, 200, res.text);
    await server.stop();
    const again = await verify();
    assert.equal(again.code, 0, again.stdout);
    const after = (await show('query')).filter((entry) => entry.act === 'query' && entry.subjects_file);
    assert.equal(after.length, withFiles.length + 1);
  });

  it('audit tail is audit show: the newest records, filtered', async () => {
    const lines = async (command, ...args) => (await runCli(['audit', command, ...args, ...dataArgs()])).stdout
      .trim().split('\n').filter(Boolean);
    const tail = await lines('tail', '--limit', '3');
    assert.equal(tail.length, 3);
    assert.deepEqual(tail, await lines('show', '--limit', '3'));
    const queries = await lines('tail', '--act', 'query', '--limit', '2');
    assert.equal(queries.length, 2);
    assert.ok(queries.every((line) => JSON.parse(line).act.startsWith('query')), queries.join('\n'));
    assert.deepEqual(queries, await lines('show', '--act', 'query', '--limit', '2'));
  });

  it('checkpoints are signed by the key folder\'s key; another key fails verify', async () => {
    const { stdout: publicKey } = await runCli(['audit', 'public-key', ...dataArgs()]);
    assert.match(publicKey.trim(), /^[0-9a-f]{64}$/);
    const anchors = await fsp.readFile(path.join(server.dataDir, 'audit', 'anchors'), 'utf8');
    const lines = anchors.trim().split('\n');
    assert.ok(lines.length >= 1);
    assert.match(lines.at(-1), /^\d+ [0-9a-f]{64} \d+ [0-9a-f]{128}$/);
    const verified = await verify();
    assert.equal(verified.code, 0, verified.stdout);
    assert.match(verified.stdout, /[1-9]\d* signed checkpoints\)/);
    const otherKey = publicKey.trim().replace(/^./, (c) => (c === '0' ? '1' : '0'));
    let failed = null;
    try {
      await runCli(['audit', 'verify', '--public-key', otherKey, ...dataArgs()]);
    } catch (error) {
      failed = error;
    }
    assert.ok(failed, 'verify under another key passed');
    assert.match(failed.stdout, /signed none of the checkpoints/);
    // Nothing is a day old: a prune cuts nothing, and says so.
    const { stdout: pruned } = await runCli(['audit', 'prune', '--older-than-days', '1', ...dataArgs()]);
    assert.match(pruned, /pruned 0 records/);
  });

  it('verify names an edited byte and a dropped record', async () => {
    const log = path.join(server.dataDir, 'audit', 'log');
    const original = await fsp.readFile(log);
    // Record offsets: a 16-byte header, then (u32 length, payload, 32-byte hash).
    const offsets = [];
    for (let offset = 16; offset + 4 <= original.length;) {
      offsets.push(offset);
      offset += 4 + original.readUInt32LE(offset) + 32;
    }
    assert.ok(offsets.length > 10);
    const edited = Buffer.from(original);
    edited[offsets[5] + 20] ^= 0x01;
    await fsp.writeFile(log, edited);
    let result = await verify();
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stdout, /record 6 /);
    const dropped = Buffer.concat([original.subarray(0, offsets[3]), original.subarray(offsets[4])]);
    await fsp.writeFile(log, dropped);
    result = await verify();
    assert.equal(result.code, 1, result.stdout);
    assert.match(result.stdout, /record 4 /);
    await fsp.writeFile(log, original);
    result = await verify();
    assert.equal(result.code, 0, result.stdout);
  });
});

describe('client addresses in the audit log', () => {
  let server;
  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];
  // A query from `localAddress` (every 127/8 address is the loopback), with
  // a forwarded-for header; returns the event it asked for, which its records name.
  const queryFrom = async (localAddress, forwardedFor) => {
    const body = JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: [`from-${hex32().slice(0, 8)}`] });
    const res = await httpRequest({
      port: server.port, method: 'POST', path: '/api/query', localAddress, body,
      headers: { ...server.authHeader(), 'X-Forwarded-For': forwardedFor },
    });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(body).events[0];
  };
  const showStarts = async () => {
    const { stdout } = await runCli(['audit', 'show', '--act', 'query', '--limit', '100', ...dataArgs()]);
    return stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
  };

  before(async () => {
    // 127.0.0.2 is the trusted proxy; 127.0.0.1 is a client whose own
    // X-Forwarded-For is not believed.
    server = await startServer({ projectName: 'audit-address-it', configText: 'trusted_proxies = ["127.0.0.2"]\n' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('records the socket peer, or the client a trusted proxy names, sealed; shown until the day key goes', async () => {
    const direct = await queryFrom('127.0.0.1', '198.51.100.77');
    const proxied = await queryFrom('127.0.0.2', '203.0.113.5, 198.51.100.23');
    const res = await server.request({ path: '/api/audit?act=query&limit=100', headers: server.authHeader() });
    assert.equal(res.status, 200, res.text);
    const byEvent = (records, event) => records.find((record) => record.events.includes(event));
    const api = JSON.parse(res.text);
    assert.equal(byEvent(api, direct)?.address, '127.0.0.1', JSON.stringify(api));
    assert.equal(byEvent(api, proxied)?.address, '198.51.100.23', JSON.stringify(api));
    let shown = await showStarts();
    assert.equal(byEvent(shown, direct)?.address, '127.0.0.1');
    assert.equal(byEvent(shown, proxied)?.address, '198.51.100.23');
    // The log holds the sealed text only; the day's key is in the key folder.
    const logBytes = await fsp.readFile(path.join(server.dataDir, 'audit', 'log'), 'latin1');
    assert.ok(!logBytes.includes('198.51.100') && !logBytes.includes('203.0.113'), 'an address in clear in the log');
    assert.match(logBytes, /"address":"\d{4}-\d{2}-\d{2}:[A-Za-z0-9_-]+"/);
    const keyFolder = path.join(server.keysDir, 'audit-address');
    const dayKeys = (await fsp.readdir(keyFolder)).filter((name) => /^address-\d{4}-\d{2}-\d{2}\.key$/.test(name));
    assert.ok(dayKeys.length >= 1, JSON.stringify(dayKeys));
    // The day keys gone (as audit_address_retention_days destroys them):
    // the addresses are unreadable, the chain verifies.
    await server.stop();
    for (const name of dayKeys) {
      await fsp.rm(path.join(keyFolder, name));
    }
    shown = await showStarts();
    assert.equal(byEvent(shown, direct)?.address, 'expired');
    assert.equal(byEvent(shown, proxied)?.address, 'expired');
    const { stdout } = await runCli(['audit', 'verify', ...dataArgs()]);
    assert.match(stdout, /^ok: /);
  });
});

describe('the policy version in read records', () => {
  let server;
  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];
  before(async () => {
    server = await startServer({ projectName: 'audit-policy-it' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('every read names the policy version in force (0: the default); tail and GET /api/audit show it', async () => {
    const ask = async (event) => {
      const res = await server.request({ method: 'POST', path: '/api/query', headers: server.authHeader(),
        body: JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: [event] }) });
      assert.equal(res.status, 200, res.text);
    };
    const before = `pv_before_${hex32()}`;
    const after = `pv_after_${hex32()}`;
    await ask(before);
    const put = await server.request({ method: 'PUT', path: '/api/policy',
      headers: { ...server.authHeader(), 'Content-Type': 'text/plain' }, body: 'ip = "drop"\n' });
    assert.equal(put.status, 200, put.text);
    const version = JSON.parse(put.text).version;
    assert.ok(version >= 1, put.text);
    await ask(after);
    const res = await server.request({ path: '/api/audit?act=query&limit=1000', headers: server.authHeader() });
    assert.equal(res.status, 200, res.text);
    // A query's records: `query` alone, or `query.start` then `query` when
    // it ran past audit_query_start_ms; each names the version.
    const versions = (records, event) => {
      const mine = records.filter((record) => record.events.includes(event));
      return { closes: mine.filter((record) => record.act === 'query').length,
        versions: [...new Set(mine.map((record) => record.policy_version))] };
    };
    const api = JSON.parse(res.text);
    assert.deepEqual(versions(api, before), { closes: 1, versions: [0] });
    assert.deepEqual(versions(api, after), { closes: 1, versions: [version] });
    const { stdout } = await runCli(['audit', 'tail', '--act', 'query', '--limit', '1000', ...dataArgs()]);
    const tail = stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
    assert.deepEqual(versions(tail, after), { closes: 1, versions: [version] });
    // An admin act is not a read: it names no version.
    const { stdout: putLines } = await runCli(['audit', 'show', '--act', 'policy.put', ...dataArgs()]);
    const puts = putLines.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
    assert.ok(puts.length >= 1 && puts.every((record) => !('policy_version' in record)), JSON.stringify(puts));
  });
});

describe('what a read asked, masked, in its opening record', () => {
  let server;
  let auditor;
  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];
  // Generated, so that a hit can only be this test's own planting.
  const person = `person-${hex32().slice(0, 12)}`;
  const others = [`person-${hex32().slice(0, 12)}`, `person-${hex32().slice(0, 12)}`];
  const email = `m.${hex32().slice(0, 10)}@example.test`;
  const eventName = `params_${hex32().slice(0, 8)}`;
  before(async () => {
    server = await startServer({ projectName: 'audit-params-it' });
    const res = await server.importJson([person, ...others].map((id) => ({
      event: eventName, properties: { distinct_id: id, plan: 'pro', time: nowSeconds(), $insert_id: hex32() },
    })));
    assert.equal(res.status, 200, res.text);
    const { stdout } = await runCli(['keys', 'create', '--name', 'auditor', '--project', 'audit-params-it',
      '--scope', 'audit:read', ...dataArgs()]);
    auditor = JSON.parse(stdout.trim());
    await server.reload();
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('a query\'s first record and export.start carry params, masked; GET /api/audit, audit tail and audit trace show them', async () => {
    const query = {
      kind: 'segmentation', from: '-7d', to: 'now', measure: 'total',
      events: [eventName, `Mailed ${email}`],
      filters: [{ property: 'distinct_id', op: 'eq', value: person }, { property: 'plan', op: 'in', values: ['pro', email] }],
    };
    const asked = await server.request({ method: 'POST', path: '/api/query', headers: server.authHeader(), body: JSON.stringify(query) });
    assert.equal(asked.status, 200, asked.text);
    // An export of one person, one of a list (a POST form) and a watermarked one of a range.
    await server.exportEvents({ distinctId: person, limit: 50 });
    const listed = await server.request({
      method: 'POST', path: '/api/2.0/export', timeoutMs: 60000,
      headers: { ...server.authHeader(), 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ from_date: '2000-01-01', to_date: '2099-12-31', distinct_ids: JSON.stringify(others), watermark: 'false' }).toString(),
    });
    assert.equal(listed.status, 200, listed.text);
    const rows = await server.exportEvents({ event: [eventName], watermark: true });

    const res = await server.request({ path: '/api/audit?limit=1000', headers: server.authHeader(auditor.secret) });
    assert.equal(res.status, 200, res.text);
    const records = JSON.parse(res.text);
    // The query's one record, or its query.start when it ran past audit_query_start_ms.
    const start = records.find((record) => record.act.startsWith('query') && record.events.includes(eventName));
    assert.ok(start, JSON.stringify(records));
    assert.deepEqual(JSON.parse(start.params), {
      ...query, events: [eventName, '<masked:email>'],
      filters: [{ property: 'distinct_id', op: 'eq', value: '<masked>' }, { property: 'plan', op: 'in', values: ['pro', '<masked:email>'] }],
    });
    assert.deepEqual(start.events, ['<masked:email>', eventName].sort());
    const exportParams = records.filter((record) => record.act === 'export.start').map((record) => JSON.parse(record.params));
    assert.deepEqual(exportParams.map(({ from_date: _from, to_date: _to, ...rest }) => rest), [
      { limit: 50, distinct_id: '<masked>' },
      { distinct_ids: '<masked:2 ids>' },
      { event: [eventName] },
    ]);
    assert.ok(records.every((record) => !('watermark' in record)), 'the watermark stays hidden from audit:read');
    assert.ok(records.filter((record) => record.act === 'export').every((record) => !('params' in record)));
    // A query's close after its query.start repeats no params.
    const closes = records.filter((record) => record.act === 'query' && record.events.includes(eventName));
    assert.equal(closes.length, 1, JSON.stringify(records));
    assert.equal('params' in closes[0], start.act === 'query', JSON.stringify(closes[0]));

    const { stdout } = await runCli(['audit', 'tail', '--act', 'query', ...dataArgs()]);
    const tailed = stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
    assert.equal(tailed.find((record) => record.seq === start.seq)?.params, start.params);

    const file = path.join(server.root, 'leaked-params.jsonl');
    await fsp.writeFile(file, `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`);
    const { stdout: traced } = await runCli(['audit', 'trace', file, '--json', ...dataArgs()]);
    const found = traced.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(found.length, 1, traced);
    assert.deepEqual(JSON.parse(found[0].params).event, [eventName]);
    const { stdout: text } = await runCli(['audit', 'trace', file, ...dataArgs()]);
    assert.match(text, /parameters \{"from_date":.*"event":\[.*\]\} sha256 [0-9a-f]{64}/);

    await server.stop();
    const logBytes = await fsp.readFile(path.join(server.dataDir, 'audit', 'log'), 'latin1');
    for (const planted of [person, ...others, email]) {
      assert.ok(!logBytes.includes(planted), `${planted} in the audit log`);
    }
    const { stdout: verified } = await runCli(['audit', 'verify', ...dataArgs()]);
    assert.match(verified, /^ok: /);
  });
});
