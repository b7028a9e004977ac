// The transport: HSTS on every HTTPS response (docs/security.md,
// "Transport"), over a real TLS socket with a certificate made here by the
// openssl CLI, and none over plain HTTP.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { hex32, isoDate, nowSeconds, startServer } from './harness.mjs';

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
