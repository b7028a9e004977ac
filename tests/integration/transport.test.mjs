// The transport (docs/security.md, "Transport"): HSTS on every HTTPS
// response, over a real TLS socket with a certificate made here by the
// openssl CLI, and none over plain HTTP; separate listeners for ingestion
// and for the read/admin API, each route class on each, and the checks of
// their configuration.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

import {
  basicAuth, freePort, hex32, httpRequest, isoDate, makeTempDir, makeTlsMaterial, MINPANEL_BIN, nowSeconds,
  parseJsonLines, startServer,
} from './harness.mjs';

// kHstsMaxAgeSeconds in src/server/server.cc: 365 days.
const HSTS = 'max-age=31536000';

// One request of each kind of answer the server writes: inline (healthz,
// 404, the dashboard, a preflight), an ingest acknowledgement, a refusal
// from a worker (401), and a streamed export (its header is written apart).
function requestsOf(server) {
  const track = encodeURIComponent(JSON.stringify({
    event: 'Transport Check',
    properties: { token: server.project.token, distinct_id: 'user-transport', time: nowSeconds(), $insert_id: hex32() },
  }));
  const exportPath = `/api/2.0/export?${new URLSearchParams({ from_date: isoDate(-1), to_date: isoDate(1), reason: 'transport test' })}`;
  return [
    { name: 'healthz', status: 200, options: { path: '/healthz' } },
    { name: 'unknown route', status: 404, options: { path: '/no-such-route' } },
    { name: 'dashboard', status: 200, options: { path: '/' } },
    {
      name: 'preflight', status: 204, options: {
        method: 'OPTIONS', path: '/track',
        headers: { Origin: 'https://app.example.test', 'Access-Control-Request-Method': 'POST' },
      },
    },
    {
      name: 'ingest', status: 200, options: {
        method: 'POST', path: '/track',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: `data=${track}`,
      },
    },
    { name: 'refused query', status: 401, options: { method: 'POST', path: '/api/query', body: '{}' } },
    { name: 'export', status: 200, options: { path: exportPath, headers: server.authHeader() } },
  ];
}

describe('HSTS over TLS', () => {
  let server;
  before(async () => {
    server = await startServer({ projectName: 'transport-tls', tls: true });
  });
  after(async () => {
    await server?.cleanup();
  });

  it('serves HTTPS with the generated certificate', async () => {
    assert.equal(server.scheme, 'https');
    const res = await server.request({ path: '/healthz' });
    assert.equal(res.status, 200);
  });

  it('sends Strict-Transport-Security on every kind of response', async () => {
    for (const { name, status, options } of requestsOf(server)) {
      const res = await server.request(options);
      assert.equal(res.status, status, `${name}: ${res.text.slice(0, 200)}`);
      assert.equal(res.headers['strict-transport-security'], HSTS, name);
    }
  });
});

describe('no HSTS over plain HTTP', () => {
  let server;
  before(async () => {
    server = await startServer({ projectName: 'transport-plain' });
  });
  after(async () => {
    await server?.cleanup();
  });

  it('sends no Strict-Transport-Security header', async () => {
    for (const { name, status, options } of requestsOf(server)) {
      const res = await server.request(options);
      assert.equal(res.status, status, `${name}: ${res.text.slice(0, 200)}`);
      assert.equal(res.headers['strict-transport-security'], undefined, name);
    }
  });
});

// Separate listeners (docs/security.md, "Separate listeners"): ingestion
// and /healthz on `listen`, everything else on `listen_api`, each with a
// certificate of its own. A route on the wrong listener is 404 naming the
// listener that serves it, before any credential is looked at.
describe('separate listeners for ingestion and the read/admin API', () => {
  let server;
  let apiPort;
  let apiTls;
  const api = (options) => httpRequest({ scheme: 'https', port: apiPort, ca: fs.readFileSync(apiTls.caCert), ...options });
  const ingest = (options) => server.request(options);

  const trackBody = (name) => `data=${encodeURIComponent(JSON.stringify({
    event: name, properties: { token: server.project.token, distinct_id: 'user-listeners', time: nowSeconds(), $insert_id: hex32() },
  }))}`;
  // Each ingestion route with a request it accepts.
  const INGEST_ROUTES = [
    { name: 'POST /track', status: 200, options: () => ({
      method: 'POST', path: '/track', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: trackBody('Listener Track'),
    }) },
    { name: 'POST /import', status: 200, options: () => ({
      method: 'POST', path: '/import', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify([{ event: 'Listener Import', properties: { distinct_id: 'user-listeners', time: nowSeconds(), $insert_id: hex32() } }]),
    }) },
    { name: 'POST /e (PostHog)', status: 200, options: () => ({
      method: 'POST', path: '/e/', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ api_key: server.project.token, event: 'Listener PostHog', distinct_id: 'user-listeners', uuid: crypto.randomUUID() }),
    }) },
    { name: 'POST /v1/track (Segment)', status: 200, options: () => ({
      method: 'POST', path: '/v1/track', headers: { Authorization: basicAuth(`${server.project.token}:`), 'Content-Type': 'application/json' },
      body: JSON.stringify({ event: 'Listener Segment', userId: 'user-listeners', messageId: hex32() }),
    }) },
    { name: 'OPTIONS /track (preflight)', status: 204, options: () => ({
      method: 'OPTIONS', path: '/track', headers: { Origin: 'https://app.example.test', 'Access-Control-Request-Method': 'POST' },
    }) },
  ];
  // Each class of read and admin route with a request it answers 200.
  const API_ROUTES = [
    { name: 'POST /api/query', options: () => ({
      method: 'POST', path: '/api/query', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: ['Listener Track'] }),
    }) },
    { name: 'GET /api/2.0/export', options: () => ({
      path: `/api/2.0/export?${new URLSearchParams({ from_date: isoDate(-1), to_date: isoDate(1), reason: 'listener test' })}`,
      headers: server.authHeader(),
    }) },
    { name: 'GET /api/policy', options: () => ({ path: '/api/policy', headers: server.authHeader() }) },
    { name: 'GET /api/keys', options: () => ({ path: '/api/keys', headers: server.authHeader() }) },
    { name: 'GET /api/audit', options: () => ({ path: '/api/audit?limit=5', headers: server.authHeader() }) },
    { name: 'POST /api/access-request', options: () => ({
      method: 'POST', path: '/api/access-request', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ distinct_ids: ['user-listeners'] }),
    }) },
    { name: 'GET /api/projects', options: () => ({ path: '/api/projects', headers: server.authHeader() }) },
    { name: 'GET /api/datamap', options: () => ({ path: '/api/datamap', headers: server.authHeader() }) },
    { name: 'GET /metrics', options: () => ({ path: '/metrics', headers: server.authHeader() }) },
    { name: 'GET / (the dashboard)', options: () => ({ path: '/' }) },
  ];

  before(async () => {
    const root = await makeTempDir();
    apiTls = await makeTlsMaterial(root);
    apiPort = await freePort();
    server = await startServer({
      projectName: 'listeners', tls: true,
      configText: `listen_api = "127.0.0.1:${apiPort}"\n[tls_api]\ncert_file = "${apiTls.cert}"\nkey_file = "${apiTls.key}"\n`,
    });
    server.extraRoot = root;
  });
  after(async () => {
    await server?.cleanup();
    if (server?.extraRoot) {
      await fsp.rm(server.extraRoot, { recursive: true, force: true });
    }
  });

  it('each listener presents its own certificate', async () => {
    // The API's CA does not vouch for the ingestion listener's certificate,
    // nor the other way round.
    await assert.rejects(httpRequest({ scheme: 'https', port: server.port, path: '/healthz', ca: fs.readFileSync(apiTls.caCert) }));
    await assert.rejects(httpRequest({ scheme: 'https', port: apiPort, path: '/healthz', ca: fs.readFileSync(server.tls.caCert) }));
    assert.equal((await api({ path: '/healthz' })).status, 200);
    assert.equal((await ingest({ path: '/healthz' })).status, 200);
  });

  for (const route of INGEST_ROUTES) {
    it(`${route.name}: served on listen, 404 on listen_api`, async () => {
      const served = await ingest(route.options());
      assert.equal(served.status, route.status, served.text);
      assert.equal(served.headers['strict-transport-security'], HSTS);
      const refused = await api(route.options());
      assert.equal(refused.status, 404, refused.text);
      assert.equal(refused.headers['strict-transport-security'], HSTS);
      assert.match(JSON.parse(refused.text).error, /not served on this listener.*ingestion listener \(listen\)/);
    });
  }

  for (const route of API_ROUTES) {
    it(`${route.name}: served on listen_api, 404 on listen whatever the credential`, async () => {
      const served = await api(route.options());
      assert.equal(served.status, 200, served.text);
      const refused = await ingest(route.options());
      assert.equal(refused.status, 404, refused.text);
      const { error } = JSON.parse(refused.text);
      assert.match(error, /not served on this listener.*API listener \(listen_api\)/);
      // Nothing about where that listener is, nor whether the credential
      // would have been good: a bad one gets the same answer.
      assert.ok(!error.includes(String(apiPort)), error);
      const anonymous = await ingest({ ...route.options(), headers: {} });
      assert.equal(anonymous.status, 404, anonymous.text);
      assert.equal(anonymous.text, refused.text);
    });
  }

  it('events ingested on listen are read on listen_api', async () => {
    const params = new URLSearchParams({ from_date: isoDate(-1), to_date: isoDate(1), reason: 'listener test', watermark: 'false', event: JSON.stringify(['Listener Track', 'Listener Import']) });
    const res = await api({ path: `/api/2.0/export?${params}`, headers: server.authHeader() });
    assert.equal(res.status, 200, res.text);
    const names = parseJsonLines(res.text).map((row) => row.event).sort();
    assert.deepEqual(names, ['Listener Import', 'Listener Track']);
  });

  it('an unknown path is 404 "no route" on either', async () => {
    for (const send of [api, ingest]) {
      const res = await send({ path: '/no-such-route' });
      assert.equal(res.status, 404);
      assert.match(JSON.parse(res.text).error, /^no route/);
    }
  });
});

describe('listener configuration checks', () => {
  let root;
  before(async () => {
    root = await makeTempDir();
  });
  after(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  // Runs `minpanel serve` with a configuration it must refuse: its exit
  // code and stderr (a server that started anyway is killed at the timeout).
  const serveWith = async (configText, listen) => {
    const config = path.join(root, `bad-${hex32()}.toml`);
    await fsp.writeFile(config, configText);
    await fsp.mkdir(path.join(root, 'data'), { recursive: true });
    await fsp.mkdir(path.join(root, 'keys'), { recursive: true, mode: 0o700 });
    const args = ['serve', '--data', path.join(root, 'data'), '--keys', path.join(root, 'keys'), '--config', config];
    if (listen) {
      args.push('--listen', listen);
    }
    return new Promise((resolve) => {
      execFile(MINPANEL_BIN, args, { timeout: 20000 }, (error, stdout, stderr) => resolve({ code: error ? error.code : 0, stderr }));
    });
  };

  it('refuses listen_api on the address of listen, naming both', async () => {
    const port = await freePort();
    const same = await serveWith(`listen_api = "127.0.0.1:${port}"\n`, `127.0.0.1:${port}`);
    assert.notEqual(same.code, 0);
    assert.match(same.stderr, /listen_api.*listen/);
    const overlapping = await serveWith(`listen_api = "0.0.0.0:${port}"\n`, `127.0.0.1:${port}`);
    assert.notEqual(overlapping.code, 0);
    assert.match(overlapping.stderr, /listen_api.*listen/);
  });

  it('refuses [tls_api] without listen_api, and half of [tls_api]', async () => {
    const orphan = await serveWith('[tls_api]\ncert_file = "/nonexistent/c.pem"\nkey_file = "/nonexistent/k.pem"\n');
    assert.notEqual(orphan.code, 0);
    assert.match(orphan.stderr, /tls_api.*listen_api/);
    const half = await serveWith(`listen_api = "127.0.0.1:${await freePort()}"\n[tls_api]\ncert_file = "/nonexistent/c.pem"\n`);
    assert.notEqual(half.code, 0);
    assert.match(half.stderr, /tls_api\.cert_file.*tls_api\.key_file/);
  });
});
