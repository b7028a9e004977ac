// The audit checkpoint webhook (docs/security.md, "The audit log"): each
// signed checkpoint is POSTed to audit_checkpoint_webhook from a thread of
// its own — a real local listener receives exactly the anchors file's
// lines, the closing one at shutdown included — and a receiver that never
// answers neither slows nor stops the reads that append audit records: its
// failures are counted in /metrics and logged; one that refuses, through
// restarts of both ends, gets each checkpoint once and in order; and a
// server killed while a POST waits for an answer keeps that checkpoint.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';

import { freePort, runCli, sleep, startServer } from './harness.mjs';

// audit::kAnchorInterval: a checkpoint every 1,024 records.
const ANCHOR_INTERVAL = 1024;

// Enough policy reads (one audit record each) to pass a checkpoint, 16 at a
// time: their statuses and the slowest one's milliseconds.
async function readPolicy(server, count) {
  const statuses = [];
  let slowestMs = 0;
  for (let done = 0; done < count; done += 16) {
    const batch = Array.from({ length: Math.min(16, count - done) }, async () => {
      const started = Date.now();
      const res = await server.request({ path: '/api/policy', headers: server.authHeader() });
      slowestMs = Math.max(slowestMs, Date.now() - started);
      return res.status;
    });
    statuses.push(...(await Promise.all(batch)));
  }
  return { statuses, slowestMs };
}

async function anchorLines(server) {
  const text = await fsp.readFile(`${server.dataDir}/audit/anchors`, 'utf8');
  return text.split('\n').filter((line) => line.length > 0);
}

function webhookCount(metricsText, result) {
  const match = metricsText.match(new RegExp(`^minpanel_webhook_posts_total\\{webhook="audit_checkpoint",result="${result}"\\} (\\d+)$`, 'm'));
  return match ? Number(match[1]) : null;
}

async function metrics(server) {
  const res = await server.request({ path: '/metrics', headers: server.authHeader() });
  assert.equal(res.status, 200, res.text);
  return res.text;
}

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

describe('audit checkpoint webhook: a listener that answers', () => {
  let server;
  let receiver;
  const received = [];

  before(async () => {
    receiver = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', () => {
        received.push({ path: req.url, type: req.headers['content-type'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        res.writeHead(204).end();
      });
    });
    const port = await freePort();
    receiver.listen(port, '127.0.0.1');
    await once(receiver, 'listening');
    server = await startServer({
      projectName: 'checkpoint-webhook',
      configText: `audit_checkpoint_webhook = "http://127.0.0.1:${port}/checkpoints"\n`,
    });
  });
  after(async () => {
    await server?.cleanup();
    receiver?.close();
  });

  it('posts each checkpoint as written to the anchors file', async () => {
    const { statuses } = await readPolicy(server, ANCHOR_INTERVAL + 16);
    assert.ok(statuses.every((status) => status === 200));
    await waitFor(() => received.length >= 1, 'the first checkpoint at the webhook');
    const lines = await anchorLines(server);
    for (const { path, type, body } of received) {
      assert.equal(path, '/checkpoints');
      assert.equal(type, 'application/json');
      assert.ok(lines.includes(body.checkpoint), `a line of the anchors file: ${body.checkpoint}`);
      assert.equal(body.seq, Number(body.checkpoint.split(' ')[0]));
      // SEQ HASH TIME_MS SIGNATURE: signed by the audit key.
      assert.match(body.checkpoint, /^\d+ [0-9a-f]{64} \d+ [0-9a-f]{128}$/);
    }
    // Written while the server runs: the periodic one, at least 1,024
    // records past the last (a group commit may carry it a few past).
    assert.ok(received[0].body.seq >= ANCHOR_INTERVAL, `the periodic checkpoint: ${received[0].body.seq}`);
    await waitFor(async () => webhookCount(await metrics(server), 'sent') === received.length, '/metrics to count the posts');
    assert.equal(webhookCount(await metrics(server), 'failed'), 0);
  });

  it('posts the closing checkpoint when the server stops, and the chain verifies', async () => {
    const before = received.length;
    await server.stop();
    const lines = await anchorLines(server);
    assert.ok(received.length > before, 'the closing checkpoint was posted before the exit');
    assert.equal(received.at(-1).body.checkpoint, lines.at(-1));
    const { stdout } = await runCli(['audit', 'verify', '--data', server.dataDir, '--keys', server.keysDir]);
    assert.match(stdout, /^ok: /);
  });
});

describe('audit checkpoint webhook: a listener that never answers', () => {
  let server;
  let silent;
  const sockets = new Set();

  before(async () => {
    // Accepts connections and reads, but never answers.
    silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('data', () => {});
      socket.on('close', () => sockets.delete(socket));
    });
    const port = await freePort();
    silent.listen(port, '127.0.0.1');
    await once(silent, 'listening');
    server = await startServer({
      projectName: 'checkpoint-silent',
      configText: `audit_checkpoint_webhook = "http://127.0.0.1:${port}/checkpoints"\n`,
    });
  });
  after(async () => {
    await server?.cleanup();
    for (const socket of sockets) {
      socket.destroy();
    }
    silent?.close();
  });

  it('never holds up the reads; the failure is counted and logged', async () => {
    const { statuses, slowestMs } = await readPolicy(server, ANCHOR_INTERVAL + 16);
    assert.ok(statuses.every((status) => status === 200));
    assert.ok((await anchorLines(server)).length >= 1, 'the checkpoint was written all the same');
    // An append that waited for the receiver would wait out the POST's
    // 5 s timeout (kWebhookPostTimeoutMs), and every read behind it too.
    assert.ok(slowestMs < 5000, `the slowest read took ${slowestMs} ms`);
    await waitFor(async () => webhookCount(await metrics(server), 'failed') >= 1, 'the failed POST to be counted');
    assert.match(server.stderr, /audit checkpoint webhook: sending failed: /);
    assert.equal(webhookCount(await metrics(server), 'sent'), 0);
  });

  it('refuses a webhook that is not an http:// or https:// URL, naming the key', async () => {
    await server.stop();
    await fsp.writeFile(server.configFile, 'audit_checkpoint_webhook = "ftp://example.test/hook"\n');
    await assert.rejects(server.start({ timeoutMs: 5000 }), /audit_checkpoint_webhook/);
  });
});

describe('audit checkpoint webhook: a receiver that refuses, then restarts', () => {
  let server;
  let receiver;
  let port;
  let refusing = true;
  let refused = 0;
  let beforeServer = [];
  const accepted = [];

  function listen() {
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
    receiver.listen(port, '127.0.0.1');
    return once(receiver, 'listening');
  }

  async function closeReceiver() {
    receiver.closeAllConnections();
    receiver.close();
    await once(receiver, 'close');
  }

  function signedLines(lines) {
    return lines.filter((line) => /^\d+ [0-9a-f]{64} \d+ [0-9a-f]{128}$/.test(line));
  }

  async function serverLines() {
    return signedLines(await anchorLines(server)).filter((line) => !beforeServer.includes(line));
  }

  function queueDepth(metricsText) {
    const match = metricsText.match(/^minpanel_webhook_queue_depth\{webhook="audit_checkpoint"\} (\d+)$/m);
    return match ? Number(match[1]) : null;
  }

  before(async () => {
    port = await freePort();
    await listen();
    server = await startServer({
      projectName: 'checkpoint-retry',
      configText: `audit_checkpoint_webhook = "http://127.0.0.1:${port}/checkpoints"\n`,
    });
    // The project's creation signed one on the command line, which goes to
    // the file sink only.
    beforeServer = signedLines(await anchorLines(server));
  });
  after(async () => {
    await server?.cleanup();
    receiver?.closeAllConnections();
    receiver?.close();
  });

  it('keeps a refused checkpoint and retries it, across a restart of both ends, until each arrives once and in order', async () => {
    const { statuses } = await readPolicy(server, ANCHOR_INTERVAL + 16);
    assert.ok(statuses.every((status) => status === 200));
    // The receiver counts a refusal before its answer leaves, so the
    // server's count and log line of it follow a moment later.
    await waitFor(() => refused >= 2, 'a refused checkpoint to be retried');
    await waitFor(async () => webhookCount(await metrics(server), 'failed') >= 2, 'the retried one counted as failed');
    await waitFor(() => /audit checkpoint webhook: sending failed: answered 503; 1 queued, retrying in \d+ ms/.test(server.stderr),
      'the refusal logged');
    const text = await metrics(server);
    assert.equal(queueDepth(text), 1, 'the refused checkpoint waits in the queue');
    assert.equal(webhookCount(text, 'dropped'), 0);

    // Stopped while the receiver refuses: the periodic checkpoint and the
    // closing one are kept in the audit folder for the next start.
    await server.stop();
    const spool = (await fsp.readFile(`${server.dataDir}/audit/checkpoint-webhook.queue`, 'utf8')).split('\n').filter((line) => line.length > 0);
    assert.equal(spool[0], 'minpanel-webhook-queue 1');
    const kept = spool.slice(1).map((line) => JSON.parse(line).checkpoint);
    assert.deepEqual(kept, await serverLines());
    assert.equal(accepted.length, 0);

    // The receiver restarts too: down (connections refused) when the
    // server comes back, then up and accepting.
    await closeReceiver();
    await server.start();
    await sleep(1000);
    refusing = false;
    await listen();
    await waitFor(async () => queueDepth(await metrics(server)) === 0, 'the kept checkpoints to be accepted', 30000);
    await fsp.access(`${server.dataDir}/audit/checkpoint-webhook.queue`).then(
      () => assert.fail('the spool file is removed once empty'),
      () => {},
    );

    // A few records more, signed by this run's closing checkpoint; then each signed line of the
    // anchors file has arrived exactly once, in order, and the chain verifies.
    assert.ok((await readPolicy(server, 16)).statuses.every((status) => status === 200));
    await server.stop();
    assert.deepEqual(accepted.map((body) => body.checkpoint), await serverLines());
    assert.ok(accepted.length >= 3, `checkpoints of both runs: ${accepted.length}`);
    for (const body of accepted) {
      assert.equal(body.seq, Number(body.checkpoint.split(' ')[0]));
    }
    const { stdout } = await runCli(['audit', 'verify', '--data', server.dataDir, '--keys', server.keysDir]);
    assert.match(stdout, /^ok: /);
  });
});

describe('audit checkpoint webhook: a server killed while a POST waits for its answer', () => {
  let server;
  let silent;
  let receiver;
  const sockets = new Set();
  let requestBytes = 0;
  const accepted = [];

  before(async () => {
    // Reads the POST, never answers: the send waits out its 5 s.
    silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.on('data', (chunk) => {
        requestBytes += chunk.length;
      });
      socket.on('close', () => sockets.delete(socket));
    });
    const port = await freePort();
    silent.listen(port, '127.0.0.1');
    await once(silent, 'listening');
    server = await startServer({
      projectName: 'checkpoint-killed',
      configText: `audit_checkpoint_webhook = "http://127.0.0.1:${port}/checkpoints"\n`,
    });
  });
  after(async () => {
    await server?.cleanup();
    for (const socket of sockets) {
      socket.destroy();
    }
    silent?.close();
    receiver?.close();
  });

  it('keeps the checkpoint in flight, and the next start sends it', async () => {
    const { statuses } = await readPolicy(server, ANCHOR_INTERVAL + 16);
    assert.ok(statuses.every((status) => status === 200));
    await waitFor(() => requestBytes > 0, 'the POST to reach the receiver');
    // Killed before the send could fail: only a file written before it
    // left keeps the checkpoint.
    await server.kill();
    const signed = (await anchorLines(server)).filter((line) => /^\d+ [0-9a-f]{64} \d+ [0-9a-f]{128}$/.test(line));
    const spool = (await fsp.readFile(`${server.dataDir}/audit/checkpoint-webhook.queue`, 'utf8')).split('\n').filter((line) => line.length > 0);
    assert.equal(spool[0], 'minpanel-webhook-queue 1');
    assert.deepEqual(spool.slice(1).map((line) => JSON.parse(line).checkpoint), [signed.at(-1)]);

    receiver = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', () => {
        accepted.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        res.writeHead(204).end();
      });
    });
    const port = await freePort();
    receiver.listen(port, '127.0.0.1');
    await once(receiver, 'listening');
    await fsp.writeFile(server.configFile, `audit_checkpoint_webhook = "http://127.0.0.1:${port}/checkpoints"\n`);
    await server.start();
    await waitFor(() => accepted.length >= 1, 'the kept checkpoint at the next start');
    assert.equal(accepted[0].checkpoint, signed.at(-1));
  });
});
