// SIGHUP re-reads the configuration file and the projects without a
// restart: limits, new projects, rotated secrets, the [anomaly] rules and
// their webhook, the erasure purge deadline (for erasures already waiting
// too). A configuration that fails
// its checks is refused, at start-up with a message naming the key, and on
// reload by keeping the running one.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import http from 'node:http';
import { once } from 'node:events';
import path from 'node:path';

import { createProject, freePort, runCli, sleep, startServer, MINPANEL_BIN } from './harness.mjs';
import { execFile } from 'node:child_process';

const SMALL_LIMITS = 'log_level = "info"\n[limits]\nbody_bytes_max = 4096\n';
const LARGE_LIMITS = 'log_level = "info"\n[limits]\nbody_bytes_max = 1048576\n';

function trackBody(token, distinctId, padBytes = 0) {
  const event = { event: 'Reloaded', properties: { token, distinct_id: distinctId, pad: 'p'.repeat(padBytes) } };
  return `data=${encodeURIComponent(JSON.stringify(event))}`;
}

async function track(server, token, padBytes = 0) {
  return server.request({
    method: 'POST',
    path: '/track?verbose=1',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: trackBody(token, 'user-reload', padBytes),
  });
}

// Sends SIGHUP and waits until `check` holds (reloads are asynchronous).
async function hangUpUntil(server, check, what) {
  process.kill(server.pid, 'SIGHUP');
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if (await check()) {
      return;
    }
    await sleep(50);
  }
  assert.fail(`after SIGHUP: ${what}`);
}

describe('SIGHUP reload', () => {
  let server;
  before(async () => {
    server = await startServer({ projectName: 'reload-project', configText: SMALL_LIMITS });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('applies new limits from the configuration file', async () => {
    const refused = await track(server, server.project.token, 8000);
    assert.equal(refused.status, 413, refused.text);
    await fsp.writeFile(server.configFile, LARGE_LIMITS);
    await hangUpUntil(server, async () => (await track(server, server.project.token, 8000)).status === 200,
      'an 8 KB body is still refused after raising body_bytes_max');
  });

  it('picks up a project created by the CLI while running', async () => {
    const late = await createProject(server.dataDir, server.keysDir, 'late-project');
    assert.equal((await track(server, late.token)).status, 401);
    await hangUpUntil(server, async () => (await track(server, late.token)).status === 200,
      'the new project token is still unknown');
  });

  it('stops accepting a rotated secret and accepts the new one', async () => {
    const { stdout } = await runCli(['project', 'rotate-secret', 'reload-project', '--data', server.dataDir,
      '--keys', server.keysDir, '--json']);
    const rotated = JSON.parse(stdout.trim());
    assert.notEqual(rotated.secret, server.project.secret);
    const oldSecret = server.project.secret;
    const exportWith = (secret) => server.request({
      path: '/api/2.0/export?from_date=2020-01-01&to_date=2030-01-01',
      headers: server.authHeader(secret),
    });
    await hangUpUntil(server, async () => (await exportWith(oldSecret)).status === 401,
      'the old secret still reads');
    assert.equal((await exportWith(rotated.secret)).status, 200);
    server.project.secret = rotated.secret;
  });

  it('reloads the [anomaly] rules and their webhook', async () => {
    const alerts = [];
    const webhook = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', () => {
        alerts.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        res.writeHead(204).end();
      });
    });
    const webhookPort = await freePort();
    webhook.listen(webhookPort, '127.0.0.1');
    await once(webhook, 'listening');
    try {
      const createExporter = async (name) => {
        const { stdout } = await runCli(['keys', 'create', '--name', name, '--project', 'reload-project',
          '--scope', 'export', '--json', '--data', server.dataDir, '--keys', server.keysDir]);
        return JSON.parse(stdout.trim());
      };
      const steady = await createExporter('steady-exporter');
      const bursty = await createExporter('bursty-exporter');
      await server.reload();
      const exportWith = (secret) => server.request({
        path: '/api/2.0/export?from_date=2020-01-01&to_date=2030-01-01&limit=1',
        headers: server.authHeader(secret),
      });
      // The running rules: a burst is 20 small exports (the default).
      for (let exportIdx = 0; exportIdx < 4; exportIdx += 1) {
        assert.equal((await exportWith(steady.secret)).status, 200);
      }
      await fsp.writeFile(server.configFile, `${LARGE_LIMITS}[anomaly]\nburst_exports = 3\nburst_window_s = 600\n` +
        `suspend = true\nwebhook = "http://127.0.0.1:${webhookPort}/hook"\n`);
      await server.reload();
      for (let exportIdx = 0; exportIdx < 2; exportIdx += 1) {
        assert.equal((await exportWith(bursty.secret)).status, 200, `export ${exportIdx}`);
      }
      // The third small export completes the burst: refused before it starts.
      const third = await exportWith(bursty.secret);
      assert.equal(third.status, 403, third.text);
      assert.match(JSON.parse(third.text).error, /breaks the rule 'burst'/);
      const refused = await exportWith(bursty.secret);
      assert.equal(refused.status, 403, refused.text);
      assert.match(JSON.parse(refused.text).error, /suspended by the anomaly rule 'burst'/);
      for (let attempt = 0; attempt < 200 && alerts.length === 0; attempt += 1) {
        await sleep(25);
      }
      assert.deepEqual(alerts.map((alert) => [alert.key, alert.rule, alert.suspended]), [[bursty.id, 'burst', true]]);
      assert.equal((await exportWith(steady.secret)).status, 200, 'the steady key is not suspended');
    } finally {
      webhook.close();
    }
  });

  it('refuses a broken configuration on reload and keeps serving', async () => {
    await fsp.writeFile(server.configFile, '[limits]\nbody_bytes_max = 1\n');
    process.kill(server.pid, 'SIGHUP');
    for (let attempt = 0; attempt < 100 && !server.stderr.includes('reload refused'); attempt += 1) {
      await sleep(50);
    }
    assert.match(server.stderr, /reload refused.*limits\.body_bytes_max/);
    assert.ok(server.alive);
    assert.equal((await track(server, server.project.token, 8000)).status, 200, 'the running limits stay');
  });
});

describe('SIGHUP reload of the erasure purge deadline', () => {
  let server;
  before(async () => {
    server = await startServer({ projectName: 'reload-purge', configText: 'erasure_purge_deadline_hours = 24\n' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  async function deletionsActive() {
    const res = await server.request({ path: '/metrics', headers: server.authHeader() });
    assert.equal(res.status, 200, res.text);
    const line = res.text.split('\n').find((text) => text.startsWith('minpanel_store_deletions_active '));
    assert.ok(line, 'minpanel_store_deletions_active in /metrics');
    return Number(line.split(' ')[1]);
  }

  it('purges an erasure waiting for the old deadline once a reload shortens it', async () => {
    assert.equal((await track(server, server.project.token)).status, 200);
    const res = await server.request({
      method: 'POST',
      path: '/api/erase',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ distinct_ids: ['user-reload'] }),
    });
    assert.equal(res.status, 200, res.text);
    await sleep(1500);  // the store looks at a waiting deletion every second
    assert.equal(await deletionsActive(), 1, 'the 24-hour deadline is not in force');
    await fsp.writeFile(server.configFile, 'erasure_purge_deadline_hours = 0\n');
    process.kill(server.pid, 'SIGHUP');
    // A purge pass rewrites files: give a loaded machine time.
    for (let attempt = 0; attempt < 600 && (await deletionsActive()) !== 0; attempt += 1) {
      await sleep(50);
    }
    assert.equal(await deletionsActive(), 0, 'the erasure still waits for the 24-hour deadline');
  });
});

describe('start-up checks', () => {
  it('names the bad key and exits non-zero', async () => {
    const dir = await fsp.mkdtemp(path.join((await import('node:os')).tmpdir(), 'minpanel-cfg-'));
    try {
      const config = path.join(dir, 'bad.toml');
      await fsp.writeFile(config, '[limits]\nbody_byte_max = 5\n');
      const result = await new Promise((resolve) => {
        execFile(MINPANEL_BIN, ['serve', '--config', config, '--data', path.join(dir, 'data'),
          '--listen', '127.0.0.1:1'], { timeout: 10000 }, (error, stdout, stderr) => {
          resolve({ code: error ? error.code : 0, stderr });
        });
      });
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /unknown key 'limits\.body_byte_max'/);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
