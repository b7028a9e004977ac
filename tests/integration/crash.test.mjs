// Crash safety: 16 concurrent clients POST /import batches while the server is
// SIGKILLed at random moments (at least 20 times) and restarted. A batch counts
// as acknowledged only when its 200 arrives; unacknowledged batches are resent
// after the restart with the same $insert_id values, so the server must dedupe.
// At the end every acknowledged event must be exported exactly once, and no
// event may be exported twice.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, hex32, sleep, nowSeconds, INSERT_ID_RE } from './harness.mjs';

const CLIENTS = 16;
const BATCH_EVENTS = 100;
const KILLS = Number(process.env.MINPANEL_CRASH_KILLS || 24);

function makeBatch(client, batchIndex, baseTime) {
  const events = [];
  for (let eventIndex = 0; eventIndex < BATCH_EVENTS; eventIndex += 1) {
    events.push({
      event: ['Page Viewed', 'Clicked', 'Signed Up'][eventIndex % 3],
      properties: {
        distinct_id: `crash-user-${client}-${eventIndex % 7}`,
        $insert_id: hex32(),
        time: baseTime - (batchIndex % 600),
        key: `c${client}-b${batchIndex}-e${eventIndex}`,
        plan: eventIndex % 2 ? 'pro' : 'free',
        seats: eventIndex,
      },
    });
  }
  return events;
}

describe('SIGKILL during concurrent /import', () => {
  let server;

  before(async () => {
    server = await startServer({ projectName: 'crash' });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it(`every acknowledged event survives ${KILLS} SIGKILLs exactly once`, { timeout: 240000 }, async () => {
    const baseTime = nowSeconds() - 3600;
    const acked = new Map(); // key -> $insert_id
    const sent = new Map(); // key -> $insert_id, everything ever sent
    let stopping = false;
    const unexpected = [];
    const stats = { ok: 0, failed: 0, statuses: new Map() };

    const client = async (clientIndex) => {
      let batchIndex = 0;
      while (!stopping) {
        const batch = makeBatch(clientIndex, batchIndex, baseTime);
        for (const item of batch) {
          sent.set(item.properties.key, item.properties.$insert_id);
        }
        const body = JSON.stringify(batch);
        // Resend the same batch until it is acknowledged, even after `stopping`.
        for (;;) {
          let res = null;
          try {
            res = await server.request({
              method: 'POST', path: '/import',
              headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
              body, timeoutMs: 15000,
            });
          } catch {
            res = null;
          }
          if (res !== null) {
            stats.statuses.set(res.status, (stats.statuses.get(res.status) || 0) + 1);
          }
          if (res !== null && res.status === 200 && res.text.trim() === '1') {
            for (const item of batch) {
              acked.set(item.properties.key, item.properties.$insert_id);
            }
            stats.ok += 1;
            break;
          }
          if (res !== null && res.status < 500 && res.status !== 429) {
            unexpected.push(`${res.status} ${res.text.slice(0, 200)}`);
          }
          stats.failed += 1;
          await sleep(20 + Math.random() * 50);
        }
        batchIndex += 1;
      }
    };

    const clients = [];
    for (let clientIndex = 0; clientIndex < CLIENTS; clientIndex += 1) {
      clients.push(client(clientIndex));
    }

    const killLog = [];
    for (let kill = 0; kill < KILLS; kill += 1) {
      // Alternate between very early kills (recovery, first writes) and later ones.
      const delay = kill % 3 === 0 ? Math.random() * 30 : 100 + Math.random() * 900;
      await sleep(delay);
      const ackedBefore = acked.size;
      const result = await server.kill();
      assert.equal(result.signal, 'SIGKILL', `kill ${kill}: the server was still running (exit ${JSON.stringify(result)})`);
      killLog.push({ delay: Math.round(delay), ackedBefore });
      await server.start({ timeoutMs: 30000 });
    }
    await sleep(500);
    stopping = true;
    await Promise.all(clients);

    assert.deepEqual(unexpected, [], 'the only failures are connection errors, 429 and 5xx while the server is down');
    assert.ok(acked.size >= CLIENTS * BATCH_EVENTS, `some batches were acknowledged (${acked.size})`);

    const rows = await server.exportEvents({ event: ['Page Viewed', 'Clicked', 'Signed Up'] });
    const counts = new Map();
    for (const row of rows) {
      const key = row.properties.key;
      counts.set(key, (counts.get(key) || 0) + 1);
    }
    const missing = [];
    for (const key of acked.keys()) {
      if (!counts.has(key)) {
        missing.push(key);
      }
    }
    const duplicated = [...counts].filter(([, count]) => count > 1).map(([key, count]) => `${key}x${count}`);
    const unknown = [...counts.keys()].filter((key) => !sent.has(key));
    const diagnostics = `acked ${acked.size}, sent ${sent.size}, exported ${rows.length}, ok ${stats.ok}, ` +
      `failed ${stats.failed}, statuses ${JSON.stringify([...stats.statuses])}, kills ${JSON.stringify(killLog.slice(0, 5))}…`;
    assert.deepEqual(missing.slice(0, 20), [], `acknowledged events lost (${missing.length}); ${diagnostics}`);
    assert.deepEqual(duplicated.slice(0, 20), [], `events exported more than once (${duplicated.length}); ${diagnostics}`);
    assert.deepEqual(unknown.slice(0, 20), [], 'exported events that were never sent');
    for (const row of rows.slice(0, 1000)) {
      assert.match(row.properties.$insert_id, INSERT_ID_RE);
      assert.equal(row.properties.$insert_id, sent.get(row.properties.key), '32-hex $insert_id kept');
    }

    // A clean stop and start changes nothing.
    const stop = await server.stop('SIGTERM');
    assert.deepEqual(stop, { code: 0, signal: null }, 'SIGTERM exits 0');
    await server.start({ timeoutMs: 30000 });
    const again = await server.exportEvents({ event: ['Page Viewed', 'Clicked', 'Signed Up'] });
    assert.equal(again.length, rows.length, 'same rows after a clean restart');
    process.stdout.write(`# crash: ${diagnostics}\n`);
  });
});
