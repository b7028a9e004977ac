// Disk full: the server runs under `prlimit --fsize`, so its writes hit
// RLIMIT_FSIZE (EFBIG; SIGXFSZ must be ignored). Ingestion must then answer
// 503 and never a false 200. After `prlimit --pid <pid> --fsize=unlimited`
// ingestion works again, and every event that got a 200 is exported once.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import { promisify } from 'node:util';

import { startServer, hex32, sleep, nowSeconds, listFiles } from './harness.mjs';

const execFileAsync = promisify(execFile);
const BATCH_EVENTS = 100;
const HEADROOM_BYTES = 2 << 20;

async function largestFile(dir) {
  let largest = 0;
  for (const file of await listFiles(dir)) {
    largest = Math.max(largest, (await fsp.stat(file)).size);
  }
  return largest;
}

function makeBatch(tag, batchIndex) {
  const events = [];
  for (let eventIndex = 0; eventIndex < BATCH_EVENTS; eventIndex += 1) {
    events.push({
      event: 'Disk Event',
      properties: {
        distinct_id: `disk-user-${eventIndex % 11}`,
        $insert_id: hex32(),
        time: nowSeconds() - 120,
        key: `${tag}-b${batchIndex}-e${eventIndex}`,
        filler: `some ordinary property text ${batchIndex}-${eventIndex}`,
        seats: eventIndex,
      },
    });
  }
  return events;
}

describe('disk full (RLIMIT_FSIZE)', () => {
  let server;

  before(async () => {
    // Learn how large the server's files are after a normal start, then run it
    // with only a little headroom beyond that.
    server = await startServer({ projectName: 'disk' });
    const stop = await server.stop('SIGTERM');
    assert.deepEqual(stop, { code: 0, signal: null }, 'SIGTERM exits 0');
    const limit = (await largestFile(server.dataDir)) + HEADROOM_BYTES;
    server.prlimitFsize = limit;
    await server.start();
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('answers 503 when writes fail, recovers when space returns, loses no acknowledged event', { timeout: 240000 }, async () => {
    const acked = new Map();
    const pending = [];
    const statuses = new Map();
    let batchIndex = 0;
    let refusedBatches = 0;
    const send = (batch) => server.request({
      method: 'POST', path: '/import?verbose=1',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify(batch), timeoutMs: 30000,
    });
    const record = (batch) => {
      for (const item of batch) {
        acked.set(item.properties.key, item.properties.$insert_id);
      }
    };

    let firstFailureBody = null;
    while (refusedBatches < 5 && batchIndex < 6000) {
      const batch = makeBatch('fill', batchIndex);
      batchIndex += 1;
      const res = await send(batch);
      statuses.set(res.status, (statuses.get(res.status) || 0) + 1);
      if (res.status === 200) {
        assert.deepEqual(JSON.parse(res.text), { status: 1, error: null });
        record(batch);
      } else {
        assert.equal(res.status, 503, `a failed write must answer 503, got ${res.status} ${res.text.slice(0, 300)}`);
        assert.notEqual(res.text.trim(), '1');
        firstFailureBody ??= res.text;
        pending.push(batch);
        refusedBatches += 1;
      }
    }
    assert.ok(refusedBatches > 0, `no 503 after ${batchIndex} batches (limit ${server.prlimitFsize} bytes); statuses ${JSON.stringify([...statuses])}`);
    assert.match(firstFailureBody, /disk|space|storage|write|full|i\/o|io error|file|log/i, `503 body names the cause: ${firstFailureBody}`);
    assert.ok(server.alive, 'the server survives hitting RLIMIT_FSIZE (SIGXFSZ ignored)');

    // /track is refused with 503 too once its write fails. A small batch may
    // still fit below the limit: a 200 must then mean the events are stored.
    let trackRefused = false;
    for (let attempt = 0; attempt < 200 && !trackRefused; attempt += 1) {
      const trackBatch = makeBatch(`track${attempt}`, 0).slice(0, 50).map((item) => ({
        event: item.event, properties: { ...item.properties, token: server.project.token },
      }));
      const trackRes = await server.request({
        method: 'POST', path: '/track?verbose=1', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: `data=${Buffer.from(JSON.stringify(trackBatch)).toString('base64')}`,
      });
      if (trackRes.status === 200) {
        assert.deepEqual(JSON.parse(trackRes.text), { status: 1, error: null });
        record(trackBatch);
        continue;
      }
      assert.equal(trackRes.status, 503, `/track while full: ${trackRes.status} ${trackRes.text.slice(0, 200)}`);
      assert.equal(JSON.parse(trackRes.text).status, 0, '/track verbose failure body');
      trackRefused = true;
    }
    assert.ok(trackRefused, '/track never answered 503 while the file size limit was hit');

    // Space returns.
    await execFileAsync('prlimit', ['--pid', String(server.pid), '--fsize=unlimited']);
    const deadline = Date.now() + 15000;
    while (pending.length > 0) {
      const res = await send(pending[0]);
      if (res.status === 200) {
        record(pending.shift());
        continue;
      }
      assert.equal(res.status, 503, `retry after space returned: ${res.status} ${res.text.slice(0, 200)}`);
      assert.ok(Date.now() < deadline, 'ingestion did not recover within 15 s of the limit being lifted');
      await sleep(200);
    }
    for (let extra = 0; extra < 5; extra += 1) {
      const batch = makeBatch('after', extra);
      const res = await send(batch);
      assert.equal(res.status, 200, `new batch after recovery: ${res.status} ${res.text.slice(0, 200)}`);
      record(batch);
    }

    const check = async (label) => {
      const rows = await server.exportEvents({ event: ['Disk Event'] });
      const counts = new Map();
      for (const row of rows) {
        counts.set(row.properties.key, (counts.get(row.properties.key) || 0) + 1);
      }
      const missing = [...acked.keys()].filter((key) => !counts.has(key));
      const duplicated = [...counts].filter(([, count]) => count > 1).map(([key]) => key);
      assert.deepEqual(missing.slice(0, 20), [], `${label}: acknowledged events missing (${missing.length} of ${acked.size})`);
      assert.deepEqual(duplicated.slice(0, 20), [], `${label}: duplicated events (${duplicated.length})`);
      return rows.length;
    };
    const live = await check('live');
    const stop = await server.stop('SIGTERM');
    assert.deepEqual(stop, { code: 0, signal: null }, 'SIGTERM exits 0 after a disk-full episode');
    const limit = server.prlimitFsize;
    server.prlimitFsize = null;
    await server.start();
    const restarted = await check('after restart');
    assert.equal(restarted, live, 'the same rows after a restart');
    process.stdout.write(`# disk_full: limit ${limit} acked ${acked.size} statuses ${JSON.stringify([...statuses])} first 503: ${firstFailureBody}\n`);
  });
});
