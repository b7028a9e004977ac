// The webhooks over https (docs/security.md, "The audit log" and "Anomaly
// rules"): a real node https server whose certificates this test makes with
// the openssl CLI (a throwaway CA; nothing checked in). The audit
// checkpoint webhook refuses a receiver whose certificate the system's CAs
// do not vouch for, then one whose certificate names another host, keeping
// the checkpoints in its queue file through each restart, and delivers
// every one, once and in order, when the certificate is right and its CA
// is audit_checkpoint_webhook_ca_file; the anomaly alerts go to an https
// webhook too; a CA file that holds no certificate, or one given for an
// http:// webhook, is refused at start, naming the key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import https from 'node:https';
import path from 'node:path';
import { once } from 'node:events';
import { promisify } from 'node:util';

import { freePort, hex32, isoDate, makeTempDir, makeTlsMaterial, nowSeconds, runCli, sleep, startServer } from './harness.mjs';

const execFileAsync = promisify(execFile);

// audit::kAnchorInterval: a checkpoint every 1,024 records.
const ANCHOR_INTERVAL = 1024;
const SIGNED_LINE = /^\d+ [0-9a-f]{64} \d+ [0-9a-f]{128}$/;

// A server certificate for `dnsName` only, signed by the CA that
// makeTlsMaterial left in `dir`: trusted, but for another host than 127.0.0.1.
async function makeCertificateFor(dir, dnsName) {
  const key = path.join(dir, `${dnsName}.key`);
  const csr = path.join(dir, `${dnsName}.csr`);
  const cert = path.join(dir, `${dnsName}.pem`);
  const ext = path.join(dir, `${dnsName}.ext`);
  const run = (args) => execFileAsync('openssl', args, { timeout: 60000 });
  await run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${dnsName}`]);
  await fsp.writeFile(ext, `subjectAltName=DNS:${dnsName}\nbasicConstraints=CA:FALSE\n` +
    'keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  await run(['x509', '-req', '-in', csr, '-CA', path.join(dir, 'ca.pem'), '-CAkey', path.join(dir, 'ca.key'),
    '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  return { cert, key };
}

// An https receiver that keeps each JSON body it is sent and counts the
// TLS handshakes clients gave up on.
async function startReceiver(tls) {
  const receiver = {
    received: [],
    handshakesRefused: 0,
    server: null,
    port: await freePort(),
  };
  receiver.server = https.createServer({ cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) }, (req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      receiver.received.push({ path: req.url, type: req.headers['content-type'], body: JSON.parse(Buffer.concat(chunks).toString('utf8')) });
      res.writeHead(204).end();
    });
  });
  receiver.server.on('tlsClientError', () => {
    receiver.handshakesRefused += 1;
  });
  receiver.server.listen(receiver.port, '127.0.0.1');
  await once(receiver.server, 'listening');
  return receiver;
}

async function readPolicy(server, count) {
  for (let done = 0; done < count; done += 16) {
    const batch = Array.from({ length: Math.min(16, count - done) }, () =>
      server.request({ path: '/api/policy', headers: server.authHeader() }).then((res) => res.status));
    for (const status of await Promise.all(batch)) {
      assert.equal(status, 200);
    }
  }
}

async function metrics(server) {
  const res = await server.request({ path: '/metrics', headers: server.authHeader() });
  assert.equal(res.status, 200, res.text);
  return res.text;
}

function metric(text, name, labels) {
  const escaped = labels.replace(/[{}"]/g, (c) => `\\${c}`);
  const match = text.match(new RegExp(`^${name}\\{${escaped}\\} (\\d+)$`, 'm'));
  return match ? Number(match[1]) : null;
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

describe('webhooks over https', () => {
  let dir;
  let tls;
  let receiver;
  const servers = [];

  before(async () => {
    dir = await makeTempDir('minpanel-https-webhook-');
    tls = await makeTlsMaterial(dir);
    receiver = await startReceiver(tls);
  });
  after(async () => {
    for (const server of servers) {
      await server.cleanup();
    }
    receiver?.server.closeAllConnections();
    receiver?.server.close();
    if (dir) {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });

  it('the checkpoint webhook refuses an untrusted certificate and one for another host, keeps each checkpoint, and delivers them all once the certificate is right', async () => {
    const url = `https://127.0.0.1:${receiver.port}/checkpoints`;
    // No CA file: the system's CAs, which do not hold this test's CA.
    const server = await startServer({ projectName: 'https-checkpoints', configText: `audit_checkpoint_webhook = "${url}"\n` });
    servers.push(server);
    const beforeServer = (await fsp.readFile(`${server.dataDir}/audit/anchors`, 'utf8')).split('\n');
    const serverLines = async () => (await fsp.readFile(`${server.dataDir}/audit/anchors`, 'utf8')).split('\n')
      .filter((line) => SIGNED_LINE.test(line) && !beforeServer.includes(line));
    const depth = async () => metric(await metrics(server), 'minpanel_webhook_queue_depth', 'webhook="audit_checkpoint"');

    await readPolicy(server, ANCHOR_INTERVAL + 16);
    await waitFor(() => receiver.handshakesRefused >= 2, 'the untrusted receiver to be tried twice');
    assert.equal(receiver.received.length, 0, 'nothing is sent to a receiver that is not trusted');
    assert.equal(await depth(), 1, 'the refused checkpoint waits in the queue');
    assert.equal(metric(await metrics(server), 'minpanel_webhook_posts_total', 'webhook="audit_checkpoint",result="dropped"'), 0);
    await waitFor(() => /audit checkpoint webhook: sending failed: SSL certificate problem: [^;]+; 1 queued, retrying in \d+ ms/
      .test(server.stderr), 'the untrusted certificate to be logged');
    await server.stop();
    const spooled = async () => (await fsp.readFile(`${server.dataDir}/audit/checkpoint-webhook.queue`, 'utf8'))
      .split('\n').slice(1).filter((line) => line.length > 0).map((line) => JSON.parse(line).checkpoint);
    assert.deepEqual(await spooled(), await serverLines(), 'the periodic and the closing checkpoint are kept');

    // The right CA, but a certificate for another host: refused too.
    const other = await makeCertificateFor(dir, 'other.example.test');
    receiver.server.setSecureContext({ cert: fs.readFileSync(other.cert), key: fs.readFileSync(other.key) });
    await fsp.writeFile(server.configFile, `audit_checkpoint_webhook = "${url}"\naudit_checkpoint_webhook_ca_file = "${tls.caCert}"\n`);
    const stderrBefore = server.stderr.length;
    await server.start();
    // libcurl checks the name after the handshake, so the receiver sees a
    // connection that closes without a request.
    await waitFor(() => /sending failed: SSL: no alternative certificate subject name matches target host name '127\.0\.0\.1'/
      .test(server.stderr.slice(stderrBefore)), 'the host mismatch to be logged');
    assert.equal(receiver.received.length, 0);
    await server.stop();
    assert.deepEqual(await spooled(), await serverLines(), 'still kept, in order, with this run\'s closing one');

    // The certificate for 127.0.0.1, under the CA of the CA file: every
    // checkpoint arrives, once and in order, and the queue file goes.
    receiver.server.setSecureContext({ cert: fs.readFileSync(tls.cert), key: fs.readFileSync(tls.key) });
    await server.start();
    await waitFor(async () => (await depth()) === 0, 'the kept checkpoints to be delivered', 30000);
    await fsp.access(`${server.dataDir}/audit/checkpoint-webhook.queue`).then(
      () => assert.fail('the queue file is removed once empty'),
      () => {},
    );
    await server.stop();
    const lines = await serverLines();
    assert.ok(lines.length >= 2, `the periodic checkpoint and the closing ones: ${lines.length}`);
    assert.deepEqual(receiver.received.map(({ body }) => body.checkpoint), lines);
    for (const { path: target, type, body } of receiver.received) {
      assert.equal(target, '/checkpoints');
      assert.equal(type, 'application/json');
      assert.equal(body.seq, Number(body.checkpoint.split(' ')[0]));
    }
    const { stdout } = await runCli(['audit', 'verify', '--data', server.dataDir, '--keys', server.keysDir]);
    assert.match(stdout, /^ok: /);
  });

  it('the anomaly alerts go to an https webhook whose CA is [anomaly] webhook_ca_file', async () => {
    receiver.received.length = 0;
    const server = await startServer({
      projectName: 'https-alerts',
      configText: '[anomaly]\nburst_exports = 3\nburst_window_s = 120\nburst_rows_max = 1000\n' +
        `webhook = "https://127.0.0.1:${receiver.port}/alerts"\nwebhook_ca_file = "${tls.caCert}"\n`,
    });
    servers.push(server);
    const imported = await server.importJson([1, 2, 3].map((user) => (
      { event: 'https-alert', properties: { distinct_id: `generated-${user}`, time: nowSeconds(), $insert_id: hex32() } })));
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
    const burst = () => receiver.received.find(({ body }) => body.key === key.id && body.rule === 'burst');
    await waitFor(() => burst() !== undefined, `the burst alert at the https webhook: ${server.stderr.slice(-3000)}`);
    assert.equal(burst().path, '/alerts');
    assert.equal(burst().type, 'application/json');
    assert.equal(burst().body.alert, 'anomaly');
    assert.equal(metric(await metrics(server), 'minpanel_webhook_posts_total', 'webhook="anomaly",result="failed"'), 0);
  });

  it('refuses a CA file that holds no certificate, and a CA file for an http:// webhook, naming the key', async () => {
    const server = await startServer({ projectName: 'https-refusals' });
    servers.push(server);
    await server.stop();
    server.configFile = path.join(server.root, 'minpanel.toml');
    const notPem = path.join(dir, 'not-a-ca.pem');
    await fsp.writeFile(notPem, 'not a certificate\n');
    await fsp.writeFile(server.configFile, `audit_checkpoint_webhook = "https://127.0.0.1:${receiver.port}/c"\n` +
      `audit_checkpoint_webhook_ca_file = "${notPem}"\n`);
    await assert.rejects(server.start({ timeoutMs: 5000 }), /'audit_checkpoint_webhook_ca_file' .*not-a-ca\.pem: no CA certificate read/);
    await fsp.writeFile(server.configFile, `[anomaly]\nwebhook = "https://127.0.0.1:${receiver.port}/a"\n` +
      `webhook_ca_file = "${path.join(dir, 'missing.pem')}"\n`);
    await assert.rejects(server.start({ timeoutMs: 5000 }), /'anomaly\.webhook_ca_file' .*missing\.pem: no CA certificate read/);
    await fsp.writeFile(server.configFile, `audit_checkpoint_webhook = "http://127.0.0.1:${receiver.port}/c"\n` +
      `audit_checkpoint_webhook_ca_file = "${tls.caCert}"\n`);
    await assert.rejects(server.start({ timeoutMs: 5000 }), /'audit_checkpoint_webhook_ca_file' is for an https:\/\/ 'audit_checkpoint_webhook' only/);
  });
});
