// The store's flush on the real server: with store_memtable_rows_max = 500,
// 6,000 events sent through /import are flushed into many segment files while
// ingestion runs. The export holds each event exactly once, a query counts
// them per day, and both give the same answers after a clean restart (the
// memtable flushed on close) and after SIGKILL (the log tail replayed).
// Each flush rolls the write-ahead log, so the log shrinks to one file once
// the flushes are done, and to its bare header after a clean close.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { hex32, sleep, startServer } from './harness.mjs';

const DAY_MS = 86400000;
const BATCHES = 24;
const BATCH_EVENTS = 250;
const MEMTABLE_ROWS = 500;
// Three UTC days ending yesterday, inside the export's default range.
const FIRST_DAY_MS = Math.floor(Date.now() / DAY_MS) * DAY_MS - 3 * DAY_MS;

function makeBatch(batchIndex) {
  const events = [];
  for (let eventIndex = 0; eventIndex < BATCH_EVENTS; eventIndex += 1) {
    const serial = batchIndex * BATCH_EVENTS + eventIndex;
    events.push({
      event: serial % 4 === 0 ? 'Flush Purchase' : 'Flush View',
      properties: {
        distinct_id: `flush-user-${serial % 37}`,
        $insert_id: hex32(),
        time: FIRST_DAY_MS + (serial % 3) * DAY_MS + (serial % 1000) * 1000,
        key: `k${serial}`,
        plan: serial % 2 ? 'pro' : 'free',
      },
    });
  }
  return events;
}

async function segmentFiles(dataDir) {
  const root = path.join(dataDir, 'store', 'segments');
  const files = [];
  for (const project of await fsp.readdir(root).catch(() => [])) {
    for (const name of await fsp.readdir(path.join(root, project)).catch(() => [])) {
      files.push(`${project}/${name}`);
    }
  }
  return files;
}

const LOG_HEADER_BYTES = 24;

// The write-ahead log's files: [name, bytes]. A file that a flush's trim
// deletes between the listing and its stat is left out, as a listing a
// moment later would.
async function logFiles(dataDir) {
  const root = path.join(dataDir, 'store', 'wal');
  const files = [];
  for (const name of (await fsp.readdir(root)).sort()) {
    if (name.endsWith('.log')) {
      const stat = await fsp.stat(path.join(root, name)).catch((error) => {
        if (error.code === 'ENOENT') {
          return null;
        }
        throw error;
      });
      if (stat !== null) {
        files.push([name, stat.size]);
      }
    }
  }
  return files;
}

const SEGMENTATION = {
  kind: 'segmentation',
  from: new Date(FIRST_DAY_MS).toISOString().slice(0, 10),
  to: new Date(FIRST_DAY_MS + 3 * DAY_MS).toISOString().slice(0, 10),
  unit: 'day', events: ['Flush Purchase', 'Flush View'], measure: 'total', time_zone: 'UTC',
};

describe('store flush into segment files', () => {
  let server;
  const sent = new Map();

  before(async () => {
    server = await startServer({ projectName: 'flush', configText: `store_memtable_rows_max = ${MEMTABLE_ROWS}\n` });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  const exported = async () => {
    const rows = await server.exportEvents({ event: ['Flush Purchase', 'Flush View'] });
    const counts = new Map();
    for (const row of rows) {
      counts.set(row.properties.key, (counts.get(row.properties.key) || 0) + 1);
    }
    const missing = [...sent.keys()].filter((key) => !counts.has(key));
    const twice = [...counts].filter(([, count]) => count > 1).map(([key]) => key);
    const unknown = [...counts.keys()].filter((key) => !sent.has(key));
    assert.deepEqual(missing.slice(0, 10), [], `missing ${missing.length}`);
    assert.deepEqual(twice.slice(0, 10), [], `exported twice ${twice.length}`);
    assert.deepEqual(unknown, []);
    for (const row of rows.slice(0, 200)) {
      assert.equal(row.properties.$insert_id, sent.get(row.properties.key));
    }
    return rows.length;
  };
  const query = async () => {
    const res = await server.request({
      method: 'POST', path: '/api/query',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify(SEGMENTATION),
    });
    assert.equal(res.status, 200, res.text);
    const { stats, ...result } = JSON.parse(res.text);
    return result;
  };

  it('flushes while ingesting and answers the same before and after restarts', { timeout: 120000 }, async () => {
    for (let batchIndex = 0; batchIndex < BATCHES; batchIndex += 1) {
      const batch = makeBatch(batchIndex);
      for (;;) {
        const res = await server.importJson(batch);
        if (res.status === 200) {
          break;
        }
        // 503 only while flushes fall behind the memtable's hard limit.
        assert.equal(res.status, 503, res.text);
        await sleep(50);
      }
      for (const item of batch) {
        sent.set(item.properties.key, item.properties.$insert_id);
      }
    }
    const deadline = Date.now() + 30000;
    while ((await segmentFiles(server.dataDir)).length < 6) {
      assert.ok(Date.now() < deadline, 'no segment files were written');
      await sleep(100);
    }
    // Every flushed log file is deleted once its manifest is durable, so
    // once the flushes are done only the file the last one rolled to is left.
    while ((await logFiles(server.dataDir)).length > 1) {
      assert.ok(Date.now() < deadline, `log not trimmed: ${JSON.stringify(await logFiles(server.dataDir))}`);
      await sleep(100);
    }
    const total = BATCHES * BATCH_EVENTS;
    assert.equal(await exported(), total);
    const live = await query();
    const values = live.series.map((series) => series.values);
    const perDay = [0, 0, 0];
    for (const series of values) {
      series.forEach((value, day) => { perDay[day] += value; });
    }
    assert.deepEqual(perDay, [total / 3, total / 3, total / 3], JSON.stringify(live));

    await server.restart();
    // Close flushed what was left after a roll: one file, just its header.
    const afterClose = await logFiles(server.dataDir);
    assert.equal(afterClose.length, 1, JSON.stringify(afterClose));
    assert.equal(afterClose[0][1], LOG_HEADER_BYTES, JSON.stringify(afterClose));
    assert.equal(await exported(), total);
    assert.deepEqual(await query(), live);

    // Some events only in the log, then SIGKILL: replayed from the log tail.
    const extra = makeBatch(BATCHES).map((item) => ({ ...item, event: 'Flush Extra' }));
    assert.equal((await server.importJson(extra)).status, 200);
    await server.kill();
    await server.start();
    assert.equal(await exported(), total);
    assert.deepEqual(await query(), live);
    const extraRows = await server.exportEvents({ event: ['Flush Extra'] });
    assert.equal(extraRows.length, BATCH_EVENTS);

    // Resent after the restart: still duplicates.
    const resent = await server.importJson(makeBatch(0).map((item, index) => ({
      ...item, properties: { ...item.properties, $insert_id: sent.get(`k${index}`), key: `k${index}` },
    })));
    assert.equal(resent.status, 200);
    assert.equal(await exported(), total);
    process.stdout.write(`# store_flush: ${(await segmentFiles(server.dataDir)).length} segment files\n`);
  });
});
