// The official `posthog-node` SDK (5.70.0) against the real minpanel binary:
// capture, identify with $set, alias, groupIdentify, a uuid sent twice and a
// historical migration, all through /batch/ (gzip, as the SDK sends it by
// default), read back through the export API and the write-ahead log; then
// every PostHog route and body form over raw HTTP.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import fsp from 'node:fs/promises';
import path from 'node:path';
import vm from 'node:vm';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';

import {
  startServer, randomTag, nowSeconds, freeProperties, PSEUDONYM_RE, INSERT_ID_RE, grepTree, runCli,
  NPM_DIR, expectedGeneralisedUrl, listFiles,
} from './harness.mjs';

const LIB_VERSION = '5.70.0';

function requirePostHog() {
  const require = createRequire(path.join(NPM_DIR, 'package.json'));
  try {
    return require('posthog-node').PostHog;
  } catch (error) {
    throw new Error(`the posthog-node npm package is missing: run \`npm ci --prefix tests/npm\` (${error.message})`);
  }
}

// What posthog-node adds to every event's properties, as stored: `$lib`
// becomes the canonical library field (exported as mp_lib, which
// freeProperties leaves out).
const SDK_PROPERTIES = { $lib_version: LIB_VERSION, $is_server: true, $geoip_disable: true };

describe('posthog-node SDK over HTTP', () => {
  const PostHog = requirePostHog();
  const run = randomTag('ph');
  const user = `user-${run}`;
  const otherUser = `other-${run}`;
  const groupKey = `acme-${run}`;
  const fakeEmail = `fake.person.${run}@example.test`;
  const fakeName = `Fakename ${run}`;
  const duplicateUuid = crypto.randomUUID();
  let server;
  let client;
  const sdkErrors = [];
  let captureStart;
  let captureEnd;
  let rows = [];
  let dumpText = '';

  const makeClient = (options = {}) => {
    const made = new PostHog(server.project.token, {
      host: `http://${server.host}`, flushAt: 1, flushInterval: 50, fetchRetryCount: 0, ...options,
    });
    made.on('error', (error) => sdkErrors.push(error));
    return made;
  };

  before(async () => {
    server = await startServer({ projectName: 'posthog-node' });
    client = makeClient();
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('sends capture, identify, alias, groupIdentify and a duplicate uuid without an SDK error', async () => {
    captureStart = nowSeconds();
    client.capture({
      distinctId: user,
      event: 'signed up',
      properties: {
        case_id: `${run}-capture`, plan: 'pro', seats: 3, trial: true, tags: ['a', 'b'],
        $current_url: 'https://app.example.test/signup?utm_source=mail&token=secret',
        note: `write to ${fakeEmail} please`, $email: fakeEmail,
      },
      groups: { company: groupKey },
    });
    client.identify({
      distinctId: user,
      properties: { $set: { email: fakeEmail, name: fakeName, plan: 'pro' }, $set_once: { signup_run: run } },
    });
    client.alias({ distinctId: user, alias: `alias-${run}` });
    client.groupIdentify({ groupType: 'company', groupKey, properties: { name: 'Acme', employees: 12 } });
    client.capture({
      distinctId: user, event: 'viewed page', properties: { case_id: `${run}-dup`, page: 'pricing' }, uuid: duplicateUuid,
    });
    await client.flush();
    // The same uuid again, in a later request: stored once.
    client.capture({
      distinctId: user, event: 'viewed page', properties: { case_id: `${run}-dup`, page: 'pricing' }, uuid: duplicateUuid,
    });
    client.capture({ distinctId: otherUser, event: 'viewed page', properties: { case_id: `${run}-other`, $set: { plan: 'free' } } });
    await client.shutdown();
    captureEnd = nowSeconds();

    // A historical migration keeps the caller's timestamps.
    const importer = makeClient({ historicalMigration: true });
    for (let index = 0; index < 3; index += 1) {
      importer.capture({
        distinctId: user, event: 'imported event', properties: { case_id: `${run}-import-${index}`, index },
        timestamp: new Date(Date.UTC(2026, 0, 15, 12, 0, index)),
      });
    }
    await importer.shutdown();
    assert.deepEqual(sdkErrors.map((error) => String(error && error.message || error)), [], 'the SDK reported no error');
  });

  it('every event arrived exactly once, as the policy stores it', async () => {
    rows = (await server.exportEvents({ fromDate: '2026-01-01' })).filter((row) =>
      String(row.properties.case_id || '').startsWith(run) || ['$identify', '$create_alias', '$groupidentify'].includes(row.event));
    const byCase = (caseId) => rows.filter((row) => row.properties.case_id === caseId);

    for (const row of rows) {
      assert.match(row.properties.distinct_id, PSEUDONYM_RE, `${row.event}: distinct_id is a pseudonym`);
      assert.match(row.properties.$insert_id, INSERT_ID_RE, `${row.event}: $insert_id`);
    }

    const [signedUp, ...extraSignedUp] = byCase(`${run}-capture`);
    assert.ok(signedUp, 'the capture arrived');
    assert.equal(extraSignedUp.length, 0, 'the capture arrived once');
    assert.equal(signedUp.event, 'signed up');
    assert.ok(signedUp.properties.time >= captureStart - 2 && signedUp.properties.time <= captureEnd + 2,
      `time ${signedUp.properties.time} within [${captureStart}, ${captureEnd}] (sent_at clock-skew correction)`);
    const stored = freeProperties(signedUp);
    const company = stored['$groups.company'];
    assert.match(company, PSEUDONYM_RE, '$groups.company is pseudonymised');
    delete stored['$groups.company'];
    assert.deepEqual(stored, {
      case_id: `${run}-capture`, plan: 'pro', seats: 3, trial: true, tags: ['a', 'b'],
      $current_url: expectedGeneralisedUrl('https://app.example.test/signup?utm_source=mail&token=secret'),
      note: 'write to [email] please', ...SDK_PROPERTIES,
    }, 'stored properties: $email dropped, the email in a note redacted, the URL generalised');

    const duplicates = byCase(`${run}-dup`);
    assert.equal(duplicates.length, 1, 'the uuid sent twice is stored once');
    assert.equal(duplicates[0].properties.page, 'pricing');

    assert.equal(byCase(`${run}-other`).length, 1, 'the other user\'s event');
    assert.notEqual(byCase(`${run}-other`)[0].properties.distinct_id, signedUp.properties.distinct_id,
      'two people, two pseudonyms');

    const subject = signedUp.properties.distinct_id;
    const identify = rows.filter((row) => row.event === '$identify' && row.properties.distinct_id === subject);
    assert.equal(identify.length, 1, '$identify stored once');
    assert.deepEqual(freeProperties(identify[0]), SDK_PROPERTIES, '$identify: its $set went to the profile, not the event');

    const alias = rows.filter((row) => row.event === '$create_alias' && row.properties.distinct_id === subject);
    assert.equal(alias.length, 1, '$create_alias stored once');
    assert.match(alias[0].properties.alias, PSEUDONYM_RE, 'the alias is a person id: pseudonymised');

    const groupIdentify = rows.filter((row) => row.event === '$groupidentify' && row.properties['$groups.company'] === company);
    assert.equal(groupIdentify.length, 1, '$groupidentify stored once, keyed by the same group pseudonym');
    assert.equal(groupIdentify[0].properties.$group_type, 'company');
    assert.equal(groupIdentify[0].properties.$group_key, undefined, 'the raw group key is not stored');

    for (let index = 0; index < 3; index += 1) {
      const imported = byCase(`${run}-import-${index}`);
      assert.equal(imported.length, 1, `imported event ${index} once`);
      assert.equal(imported[0].properties.time, Date.UTC(2026, 0, 15, 12, 0, index) / 1000, 'historical timestamp kept');
      assert.equal(imported[0].properties.distinct_id, subject);
    }
    const expectedRows = 1 + 1 + 1 + 1 + 1 + 1 + 3;
    assert.equal(rows.length, expectedRows, `no other rows: ${JSON.stringify(rows.map((row) => row.event))}`);
  });

  it('profile updates are stored, without the name or email', async () => {
    const metrics = await server.request({ path: '/metrics', headers: server.authHeader() });
    const accepted = Number((metrics.text.match(/^minpanel_profile_updates_accepted_total (\d+)$/m) || [])[1]);
    // identify: $set and $set_once; groupIdentify: the group's $set; the
    // other user's properties.$set.
    assert.equal(accepted, 4, `profile updates accepted: ${accepted}`);

    const stopped = await server.stop('SIGTERM');
    assert.deepEqual(stopped, { code: 0, signal: null }, 'SIGTERM stops gracefully');
    // The log, and the profile files that hold profile updates once flushed
    // (docs/formats/profiles.md).
    const walFiles = [
      ...(await listFiles(path.join(server.dataDir, 'store', 'wal'))).filter((file) => file.endsWith('.log')),
      ...(await listFiles(path.join(server.dataDir, 'store', 'profiles')).catch(() => [])).filter((file) => file.endsWith('.prof')),
    ];
    assert.ok(walFiles.length > 0, 'a write-ahead log file');
    const dumps = [];
    for (const file of walFiles) {
      dumps.push((await runCli(['debug', 'dump', file])).stdout);
    }
    dumpText = dumps.join('\n');
    const profiles = dumpText.split('\n').filter((line) => /^\s*profile /.test(line));
    const people = profiles.filter((line) => line.includes('group_key= '));
    const groups = profiles.filter((line) => line.includes('group_key=company '));
    assert.equal(people.length, 3, `three person updates:\n${profiles.join('\n')}`);
    assert.ok(people.some((line) => /profile \$set .*\{plan: "pro"\}$/.test(line)), `identify's $set keeps plan only:\n${people.join('\n')}`);
    assert.ok(people.some((line) => /profile \$set_once .*\{signup_run: "/.test(line)), '$set_once');
    assert.ok(people.some((line) => /profile \$set .*\{plan: "free"\}$/.test(line)), 'properties.$set of a capture');
    assert.equal(groups.length, 1, `one group update:\n${profiles.join('\n')}`);
    assert.match(groups[0], /name: "Acme", employees: 12/, 'group properties');

    const hits = await grepTree(server.dataDir, [fakeEmail, fakeName, user, groupKey]);
    assert.deepEqual(hits, [], 'no email, name, user id or group id in clear in the data folder');
    for (const needle of [fakeEmail, fakeName]) {
      assert.ok(!dumpText.includes(needle), `${needle} not in the log`);
      assert.ok(!server.stderr.includes(needle), `${needle} not in the server's stderr`);
    }
  });
});

describe('PostHog routes over raw HTTP', () => {
  const run = randomTag('phraw');
  let server;
  let token;
  const JSON_TYPE = { 'Content-Type': 'application/json' };
  const event = (caseId, extra = {}) => ({
    event: 'raw event', distinct_id: `raw-${run}`, uuid: crypto.randomUUID(),
    properties: { case_id: caseId, ...extra },
  });
  const exportCases = async () => {
    const rows = await server.exportEvents();
    const counts = new Map();
    for (const row of rows) {
      counts.set(row.properties.case_id, (counts.get(row.properties.case_id) || 0) + 1);
    }
    return counts;
  };

  before(async () => {
    server = await startServer({ projectName: 'posthog-raw' });
    token = server.project.token;
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('every capture path and body form answers exactly 200 {"status":1}', async () => {
    const sent = [];
    const paths = ['/batch', '/batch/', '/e', '/e/', '/i/v0/e', '/i/v0/e/', '/capture', '/capture/'];
    for (const capturePath of paths) {
      const caseId = `${run}-post${capturePath}`;
      sent.push(caseId);
      const res = await server.request({
        method: 'POST', path: capturePath, headers: JSON_TYPE,
        body: JSON.stringify({ api_key: token, sent_at: new Date().toISOString(), batch: [event(caseId)] }),
      });
      assert.equal(res.status, 200, `${capturePath}: ${res.text}`);
      assert.equal(res.text, '{"status":1}', capturePath);
    }
    // posthog-js: gzip as text/plain with no header and no query.
    const gzipCase = `${run}-gzip-magic`;
    sent.push(gzipCase);
    let res = await server.request({
      method: 'POST', path: '/i/v0/e/', headers: { 'Content-Type': 'text/plain' },
      body: zlib.gzipSync(JSON.stringify({ api_key: token, batch: [event(gzipCase)] })),
    });
    assert.equal(res.status, 200, res.text);
    // ?compression=base64 with a form body, and a GET with data= in the query.
    const base64Case = `${run}-base64-form`;
    sent.push(base64Case);
    const single = { ...event(base64Case), properties: { case_id: base64Case, token } };
    res = await server.request({
      method: 'POST', path: '/e/?compression=base64&ver=1.449.2', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: `data=${encodeURIComponent(Buffer.from(JSON.stringify(single)).toString('base64'))}`,
    });
    assert.equal(res.status, 200, res.text);
    const getCase = `${run}-get`;
    sent.push(getCase);
    const data = Buffer.from(JSON.stringify([{ ...event(getCase), api_key: token }])).toString('base64');
    res = await server.request({ path: `/e/?data=${encodeURIComponent(data)}&ip=1&_=${Date.now()}` });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, '{"status":1}');

    const counts = await exportCases();
    for (const caseId of sent) {
      assert.equal(counts.get(caseId), 1, `${caseId} stored once`);
    }
  });

  it('refusals name the field or limit, and store nothing of the request', async () => {
    const good = `${run}-half`;
    let res = await server.request({
      method: 'POST', path: '/batch/', headers: JSON_TYPE,
      body: JSON.stringify({ api_key: token, batch: [event(good), { event: 'no id' }] }),
    });
    assert.equal(res.status, 400);
    assert.deepEqual(JSON.parse(res.text), { error: 'batch[1].distinct_id: required (at the top of the event or in properties)' });

    const many = Array.from({ length: 1001 }, (_, index) => event(`${run}-many-${index}`));
    res = await server.request({ method: 'POST', path: '/batch/', headers: JSON_TYPE, body: JSON.stringify({ api_key: token, batch: many }) });
    assert.equal(res.status, 413, 'over kPostHogEventsMax: 413, so posthog-node halves its batch');
    assert.match(res.text, /batch: 1001 events, over the limit of 1000 per request \(kPostHogEventsMax\)/);

    res = await server.request({ method: 'POST', path: '/e/?compression=lz64', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'data=N4Ig' });
    assert.equal(res.status, 400);
    assert.match(res.text, /data: not valid lz64 \(LZString base64\)/);
    // lz-string 1.5.0's compressToBase64 of {"event":"lz event","distinct_id":"lz-user"}
    // (no token): decoded, then refused for its missing token.
    res = await server.request({
      method: 'POST', path: '/e/?compression=lz64', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'data=N4IgpgbmB2AuIC4QBsBeACSN4BoQBMBLAZ1kOgGNYB9Q/RFVAWgFdiwAnEAXyA==',
    });
    assert.equal(res.status, 401, res.text);
    assert.match(res.text, /api_key: missing/);

    res = await server.request({
      method: 'POST', path: '/batch/', headers: JSON_TYPE,
      body: JSON.stringify({ api_key: `phc_${run}`, batch: [event(`${run}-wrong-token`)] }),
    });
    assert.equal(res.status, 401);
    assert.match(res.text, /api_key: not the token of any project/);

    res = await server.request({
      method: 'POST', path: '/batch/', headers: JSON_TYPE,
      body: JSON.stringify({ api_key: token, batch: [event(`${run}-future`, {})].map((item) => ({ ...item, timestamp: '2999-01-01T00:00:00Z' })) }),
    });
    assert.equal(res.status, 400);
    assert.match(res.text, /batch\[0\]\.timestamp: more than 3600 s in the future/);

    const counts = await exportCases();
    for (const caseId of [good, `${run}-many-0`, `${run}-wrong-token`, `${run}-future`]) {
      assert.equal(counts.get(caseId), undefined, `${caseId}: nothing of a refused request is stored`);
    }
  });

  it('flags, decide and the remote config answer as posthog-js expects', async () => {
    for (const flagsPath of ['/flags/?v=2', '/flags', '/decide/?v=3']) {
      const res = await server.request({ method: 'POST', path: flagsPath, headers: { 'Content-Type': 'text/plain' }, body: zlib.gzipSync('{"token":"x"}') });
      assert.equal(res.status, 200, flagsPath);
      const body = JSON.parse(res.text);
      assert.deepEqual(body.flags, {}, flagsPath);
      assert.deepEqual(body.featureFlags, {}, flagsPath);
      assert.equal(body.errorsWhileComputingFlags, false, flagsPath);
    }
    let res = await server.request({ path: `/array/${token}/config` });
    assert.equal(res.status, 200);
    const config = JSON.parse(res.text);
    assert.equal(config.token, token);
    assert.deepEqual(config.supportedCompression, ['gzip', 'gzip-js']);

    res = await server.request({ path: `/array/${token}/config.js` });
    assert.equal(res.status, 200);
    assert.match(res.headers['content-type'], /javascript/);
    const window = {};
    vm.runInNewContext(res.text, { window });
    // Through JSON: the script's objects come from another realm.
    const registered = JSON.parse(JSON.stringify(window._POSTHOG_REMOTE_CONFIG[token]));
    assert.deepEqual(registered, { config, siteApps: [] }, 'the script registers the same config');

    res = await server.request({ path: '/array/bad%22token/config.js' });
    assert.equal(res.status, 404);
  });

  it('credentialed CORS on the PostHog routes, and preflights', async () => {
    const origin = 'http://app.example.test';
    let res = await server.request({
      method: 'POST', path: '/e/', headers: { ...JSON_TYPE, Origin: origin },
      body: JSON.stringify({ api_key: token, batch: [event(`${run}-cors`)] }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers['access-control-allow-origin'], origin);
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
    res = await server.request({
      method: 'OPTIONS', path: '/i/v0/e/',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], origin);
    assert.equal(res.headers['access-control-allow-headers'], 'content-type');
    assert.match(res.headers['access-control-allow-methods'], /POST/);
  });
});

// A proxy in front of the server that misbehaves on the first request as
// `firstMode` says: 'unavailable' answers 503 without forwarding; 'slow'
// forwards it (so it is stored) but answers only after `slowMs`, past the
// SDK's timeout. Later requests pass through.
async function startFlakyProxy(target, firstMode, { slowMs = 1500 } = {}) {
  const proxy = { requests: 0, server: null, port: 0 };
  proxy.server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      proxy.requests += 1;
      const first = proxy.requests === 1;
      if (first && firstMode === 'unavailable') {
        res.writeHead(503, { 'Content-Type': 'application/json', 'Retry-After': '0' });
        res.end('{"error":"injected"}');
        return;
      }
      const upstream = http.request({
        host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers,
      }, (upstreamRes) => {
        const body = [];
        upstreamRes.on('data', (chunk) => body.push(chunk));
        upstreamRes.on('end', () => {
          const answer = () => {
            if (!res.destroyed) {
              res.writeHead(upstreamRes.statusCode, upstreamRes.headers);
              res.end(Buffer.concat(body));
            }
          };
          if (first && firstMode === 'slow') {
            setTimeout(answer, slowMs);
          } else {
            answer();
          }
        });
      });
      upstream.on('error', () => res.destroy());
      upstream.end(Buffer.concat(chunks));
    });
  });
  proxy.server.listen(0, '127.0.0.1');
  await once(proxy.server, 'listening');
  proxy.port = proxy.server.address().port;
  proxy.close = () => new Promise((resolve) => {
    proxy.server.closeAllConnections();
    proxy.server.close(resolve);
  });
  return proxy;
}

describe('posthog-node retries', () => {
  const run = randomTag('phretry');
  let server;

  before(async () => {
    server = await startServer({ projectName: 'posthog-retry' });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  const countCase = async (caseId) => (await server.exportEvents()).filter((row) => row.properties.case_id === caseId).length;

  it('a 503 is retried and the event stored once, without an SDK error', async () => {
    const PostHog = requirePostHog();
    const proxy = await startFlakyProxy(server, 'unavailable');
    const errors = [];
    try {
      const client = new PostHog(server.project.token, {
        host: `http://127.0.0.1:${proxy.port}`, flushAt: 1, flushInterval: 0, fetchRetryCount: 3, fetchRetryDelay: 100,
      });
      client.on('error', (error) => errors.push(error));
      client.capture({ distinctId: `retry-${run}`, event: 'retried', properties: { case_id: `${run}-503` } });
      await client.shutdown();
    } finally {
      await proxy.close();
    }
    assert.equal(proxy.requests, 2, 'one 503, one retry');
    assert.deepEqual(errors.map(String), [], 'no SDK error');
    assert.equal(await countCase(`${run}-503`), 1, 'stored once');
  });

  it('an answer slower than the SDK timeout: the retry is de-duplicated on uuid', async () => {
    const PostHog = requirePostHog();
    const proxy = await startFlakyProxy(server, 'slow');
    const errors = [];
    try {
      const client = new PostHog(server.project.token, {
        host: `http://127.0.0.1:${proxy.port}`, flushAt: 1, flushInterval: 0, fetchRetryCount: 3, fetchRetryDelay: 100,
        requestTimeout: 500,
      });
      client.on('error', (error) => errors.push(error));
      client.capture({ distinctId: `retry-${run}`, event: 'retried', properties: { case_id: `${run}-slow` } });
      await client.shutdown();
    } finally {
      await proxy.close();
    }
    assert.equal(proxy.requests, 2, 'the SDK timed out and sent again');
    // Only the first answer is late, so the retry succeeds and nothing is
    // reported (the reference saw an error with every answer late).
    assert.deepEqual(errors.map(String), [], 'no SDK error');
    assert.equal(await countCase(`${run}-slow`), 1, 'delivered twice, stored once');
  });
});

// posthog-node's opt-in Capture V1 (POSTHOG_CAPTURE_MODE=v1, read when the
// client is made): POST /i/v1/analytics/events with Bearer auth.
describe('posthog-node Capture V1', () => {
  const run = randomTag('phv1');
  let server;

  before(async () => {
    server = await startServer({ projectName: 'posthog-v1' });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('events arrive once each, with their session ids and person updates', async () => {
    const PostHog = requirePostHog();
    const saved = process.env.POSTHOG_CAPTURE_MODE;
    process.env.POSTHOG_CAPTURE_MODE = 'v1';
    let client;
    try {
      client = new PostHog(server.project.token, { host: `http://${server.host}`, flushAt: 1, flushInterval: 0 });
    } finally {
      if (saved === undefined) {
        delete process.env.POSTHOG_CAPTURE_MODE;
      } else {
        process.env.POSTHOG_CAPTURE_MODE = saved;
      }
    }
    const errors = [];
    client.on('error', (error) => errors.push(error));
    const start = nowSeconds();
    client.capture({
      distinctId: `v1-${run}`, event: 'v1 event',
      properties: { case_id: `${run}-v1`, plan: 'pro', $session_id: `session-${run}`, $set: { plan: 'pro' } },
    });
    client.identify({ distinctId: `v1-${run}`, properties: { $set: { email: `v1.${run}@example.test`, seats: 4 } } });
    await client.shutdown();
    assert.deepEqual(errors.map(String), [], 'no SDK error');

    const rows = (await server.exportEvents()).filter((row) => row.properties.case_id === `${run}-v1` || row.event === '$identify');
    const events = rows.filter((row) => row.event === 'v1 event');
    assert.equal(events.length, 1, 'the event once');
    assert.ok(events[0].properties.time >= start - 2 && events[0].properties.time <= nowSeconds() + 2, 'time (created_at correction)');
    assert.equal(events[0].properties.$session_id, `session-${run}`, 'session_id moved back into the properties');
    assert.equal(events[0].properties.plan, 'pro');
    assert.equal(events[0].properties.$set, undefined);
    assert.equal(rows.filter((row) => row.event === '$identify').length, 1, '$identify once');

    const metrics = await server.request({ path: '/metrics', headers: server.authHeader() });
    assert.match(metrics.text, /^minpanel_profile_updates_accepted_total 2$/m, 'two person updates');
    assert.match(metrics.text, /^minpanel_http_requests_total\{route="\/i\/v1\/analytics\/events",status="200"\} [1-9]/m,
      'the SDK used the V1 route');
    assert.doesNotMatch(metrics.text, /route="\/batch"/, 'and not /batch/');
  });

  it('answers {"results":{}} and wants the Bearer token', async () => {
    const body = zlib.gzipSync(JSON.stringify({
      created_at: new Date().toISOString(),
      batch: [{ event: 'raw v1', uuid: crypto.randomUUID(), distinct_id: `v1-${run}`, timestamp: new Date().toISOString(), options: {}, properties: { case_id: `${run}-raw-v1` } }],
    }));
    const headers = { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip', 'PostHog-Sdk-Info': 'posthog-node/5.70.0' };
    let res = await server.request({ method: 'POST', path: '/i/v1/analytics/events', headers, body });
    assert.equal(res.status, 401);
    assert.match(res.text, /Authorization: send Bearer <project token>/);
    res = await server.request({
      method: 'POST', path: '/i/v1/analytics/events', headers: { ...headers, Authorization: `Bearer ${server.project.token}` }, body,
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, '{"results":{}}');
    const rows = (await server.exportEvents()).filter((row) => row.properties.case_id === `${run}-raw-v1`);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].properties.mp_lib, 'posthog-node', 'the library from PostHog-Sdk-Info');
  });
});

// The privacy canary (issue 3) through the PostHog routes: personal data
// planted in every place a posthog-js or posthog-node event can carry it is
// searched for — as itself, URL-encoded and as unsalted SHA-256/MD5 hex — in
// every byte of the data folder, the write-ahead log dumps, the server's
// stderr and the export.
describe('privacy canary through the PostHog routes', () => {
  const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const EMAIL = 'pat.canary@example.test';
  const NAME = 'Pemberly Quarrington';
  const PHONE = '+1 202 555 0147';
  const CARD = '4111 1111 1111 1111';
  const IBAN = 'GB82 WEST 1234 5698 7654 32';
  const JWT = [b64url({ alg: 'HS256', typ: 'JWT' }), b64url({ sub: 'ph-canary', name: NAME }), 'c2lnbmF0dXJlLXBoLWNhbmFyeQ'].join('.');
  const API_KEY = 'sk-proj-P4cAnArY9LkP4mRw8ZcY1hJd6FsA3eGu0TqWoIbNvXyK5rMl';
  const URL_TOKEN = 'Yq8WcanaryPz3Lm7';
  const DISTINCT_ID = 'ph-canary-user-7731';
  const ANON_ID = 'ph-canary-anon-5512';
  const DEVICE_ID = 'ph-canary-device-3391';
  const GROUP_ID = 'ph-org-canary-99120';
  const CLIENT_IP = '8.8.4.4';
  const USER_AGENT = `CanaryBrowser/2.0 (+mailto:${EMAIL}; ${PHONE})`;
  const PAGE_URL = `https://app.example.test/billing?token=${API_KEY}&email=${encodeURIComponent(EMAIL)}` +
    `&session=${URL_TOKEN}&utm_source=news#${URL_TOKEN}`;
  const REFERRER = `https://mail.example.test/inbox?u=${encodeURIComponent(EMAIL)}&t=${URL_TOKEN}`;
  const PLANTED = {
    EMAIL, NAME, PHONE, CARD, IBAN, JWT, API_KEY, URL_TOKEN, DISTINCT_ID, ANON_ID, DEVICE_ID, GROUP_ID, CLIENT_IP,
    USER_AGENT, PAGE_URL, REFERRER,
  };
  const needles = Object.entries(PLANTED).flatMap(([label, value]) => {
    const forms = [value, encodeURIComponent(value)];
    for (const algorithm of ['sha256', 'md5']) {
      const hex = crypto.createHash(algorithm).update(value, 'utf8').digest('hex');
      forms.push(hex, hex.toUpperCase());
    }
    return [...new Set(forms)].map((text) => ({ label, text, bytes: Buffer.from(text) }));
  });
  const run = randomTag('phcanary');
  let server;

  before(async () => {
    server = await startServer({ projectName: 'posthog-canary' });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  // Everything the server kept or printed; stops the server.
  async function everythingKept(exportText) {
    const stopped = await server.stop('SIGTERM');
    assert.deepEqual(stopped, { code: 0, signal: null });
    const locations = [{ location: 'export', bytes: Buffer.from(exportText) }];
    for (const file of await listFiles(server.dataDir)) {
      locations.push({ location: path.relative(server.dataDir, file), bytes: await fsp.readFile(file) });
      if (file.endsWith('.log') && file.includes(`${path.sep}wal${path.sep}`)) {
        locations.push({ location: `debug dump ${path.basename(file)}`, bytes: Buffer.from((await runCli(['debug', 'dump', file])).stdout) });
      }
    }
    locations.push({ location: 'stderr', bytes: Buffer.concat(server.stderrChunks) });
    return locations;
  }

  function hitsIn(locations, labels) {
    const hits = [];
    for (const { location, bytes } of locations) {
      for (const needle of needles.filter((item) => labels.includes(item.label))) {
        const at = bytes.indexOf(needle.bytes);
        if (at !== -1) {
          hits.push(`${needle.label} in ${location}: ${JSON.stringify(bytes.subarray(Math.max(0, at - 60), at + needle.bytes.length + 60).toString('latin1'))}`);
        }
      }
    }
    return hits;
  }

  it('nothing planted comes back; ordinary values and placeholders do', async () => {
    const token = server.project.token;
    const common = {
      token, distinct_id: DISTINCT_ID, case_id: `${run}-canary`, plan: 'pro', seats: 3,
      $current_url: PAGE_URL, $referrer: REFERRER, $raw_user_agent: USER_AGENT, $ip: CLIENT_IP,
      $anon_distinct_id: ANON_ID, $device_id: DEVICE_ID, $user_id: DISTINCT_ID, $groups: { company: GROUP_ID },
      $email: EMAIL, $name: NAME, email: EMAIL,
      note: `call ${PHONE} or mail ${EMAIL}; card ${CARD}; IBAN ${IBAN}`,
      support: `Authorization: Bearer ${JWT} key=${API_KEY}`,
    };
    // posthog-js: gzip as text/plain, $set/$set_once at the top of $identify.
    const browserBatch = {
      api_key: token, sent_at: new Date().toISOString(), batch: [
        { uuid: crypto.randomUUID(), event: '$pageview', timestamp: new Date().toISOString(), properties: { ...common } },
        {
          uuid: crypto.randomUUID(), event: '$identify', timestamp: new Date().toISOString(), properties: { ...common },
          $set: { email: EMAIL, name: NAME, phone: PHONE, plan: 'pro' }, $set_once: { first_card: `card ${CARD}` },
        },
      ],
    };
    let res = await server.request({
      method: 'POST', path: '/i/v0/e/', headers: { 'Content-Type': 'text/plain' }, body: zlib.gzipSync(JSON.stringify(browserBatch)),
    });
    assert.equal(res.status, 200, res.text);
    // posthog-node: Content-Encoding gzip, person and group properties.
    const serverBatch = {
      api_key: token, sent_at: new Date().toISOString(), batch: [
        {
          event: `Shared report with ${EMAIL}`, distinct_id: DISTINCT_ID, uuid: crypto.randomUUID(), timestamp: new Date().toISOString(),
          properties: { ...common, $set: { email: EMAIL, name: NAME, note: `reach ${PHONE}` }, $geoip_disable: true },
        },
        {
          event: '$groupidentify', distinct_id: `$company_${GROUP_ID}`, uuid: crypto.randomUUID(), timestamp: new Date().toISOString(),
          properties: { $group_type: 'company', $group_key: GROUP_ID, $group_set: { name: 'Acme Canary', billing_email: EMAIL, iban: IBAN } },
        },
      ],
    };
    res = await server.request({
      method: 'POST', path: '/batch/', headers: { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' },
      body: zlib.gzipSync(JSON.stringify(serverBatch)),
    });
    assert.equal(res.status, 200, res.text);

    const exported = await server.request({
      path: `/api/2.0/export?from_date=${new Date(Date.now() - 86400000).toISOString().slice(0, 10)}&to_date=${new Date(Date.now() + 86400000).toISOString().slice(0, 10)}&watermark=false`,
      headers: server.authHeader(),
    });
    assert.equal(exported.status, 200);
    const rows = exported.text.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(rows.length, 4, 'four events');
    const pageview = rows.find((row) => row.event === '$pageview');
    assert.equal(pageview.properties.plan, 'pro');
    assert.equal(pageview.properties.seats, 3);
    assert.equal(pageview.properties.$current_url, 'https://app.example.test/billing?utm_source=news');
    assert.equal(pageview.properties.note, 'call [phone] or mail [email]; card [card]; IBAN [iban]');
    assert.match(pageview.properties.$anon_distinct_id, PSEUDONYM_RE);
    assert.match(pageview.properties['$groups.company'], PSEUDONYM_RE);
    assert.ok(rows.some((row) => row.event === 'Shared report with [email]'), 'the email in an event name is redacted');

    const locations = await everythingKept(exported.text);
    const hits = hitsIn(locations, Object.keys(PLANTED));
    assert.deepEqual(hits, [], `planted data found:\n${hits.slice(0, 20).join('\n')}`);
  });

  // posthog-js also copies the page URL and referrer into free properties
  // and person properties ($session_entry_url, $initial_current_url,
  // $session_entry_referrer, $initial_referrer, ...).
  // The default policy generalises each copy as it does the page URL and
  // the referrer (src/privacy/policy_file.cc, kPageUrlCopyKeys), so a URL's
  // own tokens are nowhere.
  it('URL copies in posthog-js free and person properties are generalised too', async () => {
    const leakServer = await startServer({ projectName: 'posthog-canary-urls' });
    try {
      const res = await leakServer.request({
        method: 'POST', path: '/e/', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
          api_key: leakServer.project.token, batch: [{
            event: '$pageview', distinct_id: 'someone', uuid: crypto.randomUUID(),
            properties: { $session_entry_url: PAGE_URL, $session_entry_referrer: REFERRER, $set_once: { $initial_current_url: PAGE_URL } },
          }],
        }),
      });
      assert.equal(res.status, 200, res.text);
      await leakServer.stop('SIGTERM');
      const kept = [];
      for (const file of await listFiles(leakServer.dataDir)) {
        kept.push({ location: path.relative(leakServer.dataDir, file), bytes: await fsp.readFile(file) });
      }
      const hits = hitsIn(kept, ['URL_TOKEN']);
      assert.deepEqual(hits, [], hits.join('\n'));
    } finally {
      await leakServer.cleanup();
    }
  });
});
