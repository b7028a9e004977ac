// The audit log on the real server (issue 6; docs/formats/audit.md): every
// answered query has its record (durable before the answer left), a kill -9
// in the middle of many appends leaves a chain that `minpanel audit verify`
// accepts and the restarted server continues, and verify catches an edited
// byte and a dropped record, naming the record.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { hex32, nowSeconds, runCli, sleep, startServer } from './harness.mjs';

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
    let answered = 0;
    let stop = false;
    const worker = async () => {
      while (!stop) {
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
    await sleep(1500);
    process.kill(server.pid, 'SIGKILL');
    stop = true;
    await Promise.all(workers);
    await sleep(200);
    assert.ok(answered > 20, `queries answered before the kill: ${answered}`);
    const verified = await verify();
    assert.equal(verified.code, 0, verified.stdout);
    const recorded = (await show('query')).length;
    assert.ok(recorded >= answered, `records ${recorded} >= answered ${answered}`);
    await server.start();
    const res = await server.request({ method: 'POST', path: '/api/query', headers: server.authHeader(), body: QUERY });
    assert.equal(res.status, 200, res.text);
    await server.stop();
    const again = await verify();
    assert.equal(again.code, 0, again.stdout);
    assert.equal((await show('query')).length, recorded + 1);
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
