// The privacy policy over the admin API on the real server: GET and PUT
// /api/policy with the project secret, the history under
// /api/policy/versions, a PUT in force for the next event without SIGHUP,
// a refused policy that names its problem and changes nothing, and a
// SIGHUP after a PUT that keeps the PUT version.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { hex32, nowSeconds, startServer } from './harness.mjs';

// A marker in the policy text: it must never reach the server's log.
const MARKER = `policy-marker-${hex32()}`;
const DROP_NOTE = `# ${MARKER}\n[[rule]]\nmatch = "note"\naction = "drop"\n`;
const KEEP_NOTE = `# ${MARKER} v2\nip = "drop"\n[[rule]]\nmatch = "note"\naction = "keep"\n`;

describe('policy admin API', () => {
  let server;
  let startedMs;
  const putPolicy = (text, contentType = 'text/plain') => server.request({
    method: 'PUT',
    path: '/api/policy',
    headers: { ...server.authHeader(), 'Content-Type': contentType },
    body: text,
  });
  const getJson = async (requestPath) => {
    const res = await server.request({ path: requestPath, headers: server.authHeader() });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text);
  };
  const sendNoted = async (name) => {
    const res = await server.importJson([{
      event: name,
      properties: { distinct_id: 'user-policy', time: nowSeconds(), $insert_id: hex32(), note: 'hello', plan: 'pro' },
    }]);
    assert.equal(res.status, 200, res.text);
  };
  const exported = async (name) => {
    const rows = await server.exportEvents({ event: [name] });
    assert.equal(rows.length, 1, JSON.stringify(rows));
    return rows[0].properties;
  };

  before(async () => {
    startedMs = Date.now();
    server = await startServer({ projectName: 'policy-api', configText: 'access_log = true\n' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('needs the project secret', async () => {
    assert.equal((await server.request({ path: '/api/policy' })).status, 401);
    const wrong = await server.request({ path: '/api/policy', headers: server.authHeader('not-the-secret') });
    assert.equal(wrong.status, 401);
    const put = await server.request({ method: 'PUT', path: '/api/policy', headers: { 'Content-Type': 'text/plain' },
      body: DROP_NOTE });
    assert.equal(put.status, 401);
    assert.equal((await server.request({ path: '/api/policy/versions' })).status, 401);
    assert.equal((await server.request({ path: '/api/policy/versions/1' })).status, 401);
  });

  it('shows the built-in default before any policy', async () => {
    assert.deepEqual(await getJson('/api/policy'), { project: 'policy-api', version: 0, text: '', default: true });
    assert.deepEqual(await getJson('/api/policy/versions'), []);
  });

  it('puts a policy in force for the next event, without SIGHUP', async () => {
    await sendNoted('Before put');
    assert.equal((await exported('Before put')).note, 'hello');

    const res = await putPolicy(DROP_NOTE);
    assert.equal(res.status, 200, res.text);
    const answer = JSON.parse(res.text);
    assert.equal(answer.version, 1);
    assert.ok(Array.isArray(answer.notes) && answer.notes.some((note) => /version 1 is in force/.test(note)),
      res.text);
    assert.deepEqual(await getJson('/api/policy'), { project: 'policy-api', version: 1, text: DROP_NOTE, default: false });
    assert.equal(await fsp.readFile(path.join(server.dataDir, 'policies', 'policy-api.toml'), 'utf8'), DROP_NOTE);

    await sendNoted('After put');
    const stored = await exported('After put');
    assert.equal(stored.note, undefined, 'the rule dropped it');
    assert.equal(stored.plan, 'pro');
    assert.equal((await exported('Before put')).note, 'hello', 'stored events keep what they were stored with');
  });

  it('does not make a new version of the same text', async () => {
    const res = await putPolicy(DROP_NOTE, 'application/toml; charset=utf-8');
    assert.equal(res.status, 200, res.text);
    assert.equal(JSON.parse(res.text).version, 1);
    assert.equal((await getJson('/api/policy/versions')).length, 1);
  });

  it('refuses a bad policy naming the problem and keeps the one in force', async () => {
    const badAction = await putPolicy('[[rule]]\nmatch = "note"\naction = "hide"\n');
    assert.equal(badAction.status, 400, badAction.text);
    assert.match(JSON.parse(badAction.text).error, /'action' must be one of/);
    const badToml = await putPolicy('ip = "drop"\nrule = [\n');
    assert.equal(badToml.status, 400, badToml.text);
    assert.match(JSON.parse(badToml.text).error, /at line \d+/);
    const unknownKey = await putPolicy('ipp = "drop"\n');
    assert.equal(unknownKey.status, 400);
    assert.match(JSON.parse(unknownKey.text).error, /unknown key 'ipp'/);

    assert.equal((await getJson('/api/policy')).version, 1);
    assert.equal((await getJson('/api/policy/versions')).length, 1);
    await sendNoted('After refusal');
    assert.equal((await exported('After refusal')).note, undefined, 'version 1 is still in force');
  });

  it('checks the content type, the size and the method', async () => {
    const json = await putPolicy(DROP_NOTE, 'application/json');
    assert.equal(json.status, 415, json.text);
    const oversize = await putPolicy(`# ${'x'.repeat(300 * 1024)}\n`);
    assert.equal(oversize.status, 413, oversize.text);
    assert.match(JSON.parse(oversize.text).error, /262144 bytes/);
    const deleted = await server.request({ method: 'DELETE', path: '/api/policy', headers: server.authHeader() });
    assert.equal(deleted.status, 405);
    assert.equal(deleted.headers.allow, 'GET, PUT');
    const posted = await server.request({ method: 'POST', path: '/api/policy/versions', headers: server.authHeader(),
      body: 'x' });
    assert.equal(posted.status, 405);
    assert.equal(posted.headers.allow, 'GET');
    const putVersion = await server.request({ method: 'PUT', path: '/api/policy/versions/1',
      headers: { ...server.authHeader(), 'Content-Type': 'text/plain' }, body: DROP_NOTE });
    assert.equal(putVersion.status, 405);
    assert.equal((await getJson('/api/policy')).version, 1);
  });

  it('lists the history and serves each version', async () => {
    const res = await putPolicy(KEEP_NOTE, 'application/toml');
    assert.equal(res.status, 200, res.text);
    const answer = JSON.parse(res.text);
    assert.equal(answer.version, 2);
    assert.ok(answer.notes.some((note) => /keeps 'note'/.test(note)), res.text);
    await sendNoted('Version two');
    assert.equal((await exported('Version two')).note, 'hello');

    const versions = await getJson('/api/policy/versions');
    assert.deepEqual(versions.map((entry) => entry.version), [1, 2]);
    assert.deepEqual(versions.map((entry) => entry.bytes), [Buffer.byteLength(DROP_NOTE), Buffer.byteLength(KEEP_NOTE)]);
    for (const entry of versions) {
      assert.ok(entry.recorded_ms >= startedMs && entry.recorded_ms <= Date.now(), JSON.stringify(entry));
    }
    assert.ok(versions[0].recorded_ms <= versions[1].recorded_ms);

    const first = await server.request({ path: '/api/policy/versions/1', headers: server.authHeader() });
    assert.equal(first.status, 200);
    assert.match(first.headers['content-type'], /^application\/toml/);
    assert.equal(first.text, DROP_NOTE);
    assert.equal((await server.request({ path: '/api/policy/versions/2', headers: server.authHeader() })).text, KEEP_NOTE);
    assert.equal((await server.request({ path: '/api/policy/versions/9', headers: server.authHeader() })).status, 404);
    assert.equal((await server.request({ path: '/api/policy/versions/abc', headers: server.authHeader() })).status, 404);
  });

  it('keeps the PUT version across SIGHUP and a restart', async () => {
    await server.reload();
    assert.equal((await getJson('/api/policy')).version, 2);
    assert.equal((await getJson('/api/policy/versions')).length, 2);
    await server.restart();
    assert.deepEqual(await getJson('/api/policy'), { project: 'policy-api', version: 2, text: KEEP_NOTE, default: false });
  });

  it('writes no policy text to the log', async () => {
    assert.match(server.stderr, /PUT \/api\/policy 200/, 'the access log is on');
    assert.ok(!server.stderr.includes(MARKER), 'the policy text reached the log');
    assert.ok(!server.stderr.includes('match = "note"'));
  });
});
