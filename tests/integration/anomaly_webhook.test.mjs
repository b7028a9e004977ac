// The anomaly alerts' webhook (docs/security.md, "Anomaly rules") retries
// as the audit checkpoint webhook does: a real local receiver that answers
// 503 gets the alert again after a backoff; stopped while it still
// refuses, the server keeps the alert in the audit folder
// (anomaly-webhook.queue), and the next start delivers it once the
// receiver accepts, exactly once.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import http from 'node:http';
import { once } from 'node:events';

import { freePort, hex32, isoDate, nowSeconds, sleep, startServer } from './harness.mjs';

async function waitFor(check, what, timeoutMs = 20000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) {
      return;
    }
    await sleep(50);
  }
  assert.fail(`timed out waiting for ${what}`);
}

describe('anomaly webhook: a receiver that refuses, then accepts', () => {
  let server;
  let receiver;
  let refusing = true;
  let refused = 0;
  const accepted = [];

  before(async () => {
    receiver = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', () => {
        if (refusing) {
          refused += 1;
          res.writeHead(503).end();
          return;
        }
        accepted.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        res.writeHead(204).end();
      });
    });
    const port = await freePort();
    receiver.listen(port, '127.0.0.1');
    await once(receiver, 'listening');
    server = await startServer({
      projectName: 'anomaly-retry',
      configText: '[anomaly]\nburst_exports = 3\nburst_window_s = 120\nburst_rows_max = 1000\n' +
        `webhook = "http://127.0.0.1:${port}/alerts"\n`,
    });
  });
  after(async () => {
    await server?.cleanup();
    receiver?.closeAllConnections();
    receiver?.close();
  });

  it('retries a refused alert, keeps it across a restart, and delivers it once', async () => {
    const imported = await server.importJson([1, 2, 3].map((user) => (
      { event: 'anomaly-retry', properties: { distinct_id: `generated-${user}`, time: nowSeconds(), $insert_id: hex32() } })));
    assert.equal(imported.status, 200, imported.text);
    const created = await server.request({
      method: 'POST', path: '/api/keys', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ project_id: server.project.id, name: 'bursty', scopes: ['export'] }),
    });
    assert.equal(created.status, 201, created.text);
    const key = JSON.parse(created.text);
    for (let exportIdx = 0; exportIdx < 3; exportIdx += 1) {
      const query = new URLSearchParams({ from_date: isoDate(-1), to_date: isoDate(1), limit: '2' });
      const res = await server.request({ path: `/api/2.0/export?${query}`, headers: server.authHeader(key.secret) });
      assert.equal(res.status, 200, res.text);
    }
    await waitFor(() => refused >= 2, 'the refused alert to be retried');
    await waitFor(() => /anomaly webhook: sending failed: answered 503; 1 queued, retrying in \d+ ms/.test(server.stderr),
      'the refusal logged');

    await server.stop();
    const spool = (await fsp.readFile(`${server.dataDir}/audit/anomaly-webhook.queue`, 'utf8')).split('\n').filter((line) => line.length > 0);
    assert.equal(spool[0], 'minpanel-webhook-queue 1');
    const kept = spool.slice(1).map((line) => JSON.parse(line));
    assert.deepEqual(kept.map((alert) => [alert.key, alert.rule]), [[key.id, 'burst']]);

    refusing = false;
    await server.start();
    await waitFor(() => accepted.length >= 1, 'the kept alert at the next start');
    await waitFor(async () => fsp.access(`${server.dataDir}/audit/anomaly-webhook.queue`).then(() => false, () => true),
      'the queue file to be removed once empty');
    assert.deepEqual(accepted, kept);
  });
});
