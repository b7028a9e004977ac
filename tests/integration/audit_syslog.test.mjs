// The audit checkpoint syslog sink (docs/security.md, "The audit log"):
// with audit_checkpoint_syslog = "local4" a running server sends each signed
// checkpoint to the local syslog socket (here a real receiver of the test's
// own, syslog_receiver.py, bound where audit_checkpoint_syslog_socket
// says), as syslog(3) would: "<166>Mmm dd hh:mm:ss minpanel-audit[PID]:
// LINE". The receiver gets exactly the signed lines the server wrote to the
// anchors file, the periodic one and the closing one at shutdown; with no
// daemon on the socket no read is held up, and the failure is counted and
// logged; a facility that is not one is refused at start.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { REPO_ROOT, runCli, sleep, startServer } from './harness.mjs';

// audit::kAnchorInterval: a checkpoint every 1,024 records.
const ANCHOR_INTERVAL = 1024;
// LOG_LOCAL4 (20 << 3) | LOG_INFO (6).
const LOCAL4_INFO = 166;
const RECEIVER = path.join(REPO_ROOT, 'tests', 'integration', 'syslog_receiver.py');
const MESSAGE = /^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d minpanel-audit\[(\d+)\]: (.*)$/;

// Policy reads (one audit record each), 16 at a time: their statuses and
// the slowest one's milliseconds.
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

// The anchors file's checkpoint lines (not its key lines).
async function signedLines(server) {
  const text = await fsp.readFile(`${server.dataDir}/audit/anchors`, 'utf8');
  return text.split('\n').filter((line) => line.length > 0 && !line.startsWith('key '));
}

function sendCount(metricsText, result) {
  const match = metricsText.match(new RegExp(`^minpanel_webhook_posts_total\\{webhook="audit_checkpoint_syslog",result="${result}"\\} (\\d+)$`, 'm'));
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

// Starts syslog_receiver.py on `socketPath`; resolves once it is bound.
async function startReceiver(socketPath) {
  const child = spawn('/usr/bin/python3', [RECEIVER, socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  const messages = [];
  let stderr = '';
  let pending = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  await new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      pending += chunk;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        const parsed = JSON.parse(line);
        if (parsed.ready !== undefined) {
          resolve();
        } else {
          messages.push(parsed.message);
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`syslog_receiver.py exited ${code}: ${stderr}`)));
  });
  return { child, messages };
}

describe('audit checkpoint syslog: a receiver on the socket', () => {
  let server;
  let receiver;
  let fromCommandLine = [];

  before(async () => {
    const socketDir = await fsp.mkdtemp('/tmp/minpanel-syslog-');
    const socketPath = path.join(socketDir, 'log');
    receiver = await startReceiver(socketPath);
    server = await startServer({
      projectName: 'checkpoint-syslog',
      configText: `audit_checkpoint_syslog = "local4"\naudit_checkpoint_syslog_socket = "${socketPath}"\n`,
    });
    // The command line's checkpoints (when it made the project) went to no
    // sink: the server sends those it writes.
    fromCommandLine = await signedLines(server);
  });
  after(async () => {
    await server?.cleanup();
    receiver?.child.kill('SIGTERM');
  });

  it('receives exactly the signed lines the server wrote, periodic and closing', async () => {
    const { statuses } = await readPolicy(server, ANCHOR_INTERVAL + 16);
    assert.ok(statuses.every((status) => status === 200));
    await waitFor(() => receiver.messages.length >= 1, 'the periodic checkpoint at the receiver');
    await waitFor(async () => sendCount(await metrics(server), 'sent') === receiver.messages.length, '/metrics to count the sends');
    const serverPid = server.pid;
    await server.stop();
    const written = (await signedLines(server)).slice(fromCommandLine.length);
    assert.ok(written.length >= 2, `the server wrote ${written.length} checkpoints`);
    const received = receiver.messages.map((message) => {
      const match = message.match(MESSAGE);
      assert.ok(match, `a syslog(3)-shaped message: ${message}`);
      assert.equal(Number(match[1]), LOCAL4_INFO);
      assert.equal(Number(match[2]), serverPid);
      return match[3];
    });
    assert.deepEqual(received, written);
    for (const line of received) {
      assert.match(line, /^\d+ [0-9a-f]{64} \d+ [0-9a-f]{128}$/);
    }
    const { stdout } = await runCli(['audit', 'verify', '--data', server.dataDir, '--keys', server.keysDir]);
    assert.match(stdout, /^ok: /);
  });
});

describe('audit checkpoint syslog: no daemon on the socket', () => {
  let server;

  before(async () => {
    const socketDir = await fsp.mkdtemp('/tmp/minpanel-syslog-');
    server = await startServer({
      projectName: 'checkpoint-syslog-none',
      configText: `audit_checkpoint_syslog = "local4"\naudit_checkpoint_syslog_socket = "${path.join(socketDir, 'nobody')}"\n`,
    });
  });
  after(async () => {
    await server?.cleanup();
  });

  it('holds up no read; the failure is counted and logged', async () => {
    const { statuses, slowestMs } = await readPolicy(server, ANCHOR_INTERVAL + 16);
    assert.ok(statuses.every((status) => status === 200));
    assert.ok(slowestMs < 5000, `the slowest read took ${slowestMs} ms`);
    await waitFor(async () => sendCount(await metrics(server), 'failed') >= 1, 'the failed send to be counted');
    assert.match(server.stderr, /audit checkpoint syslog: sending failed: .*nobody/);
    assert.equal(sendCount(await metrics(server), 'sent'), 0);
  });

  it('refuses a facility that is not one, naming the key', async () => {
    await server.stop();
    await fsp.writeFile(server.configFile, 'audit_checkpoint_syslog = "local9"\n');
    await assert.rejects(server.start({ timeoutMs: 5000 }), /audit_checkpoint_syslog/);
  });
});
