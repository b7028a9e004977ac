// The official `@segment/analytics-node` SDK (3.1.0) against the real
// minpanel binary: track, identify, page, screen, group and alias through
// /v1/batch as the SDK sends them, read back through the export and
// /api/query, each exactly once; retries (a 503, and an answer later than
// the SDK's timeout) still store once; every Segment route, limit and
// refusal over raw HTTP (nothing of a refused request stored); path
// prefixes; and the privacy canary through the Segment routes.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import fsp from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';

import {
  startServer, randomTag, nowSeconds, freeProperties, PSEUDONYM_RE, INSERT_ID_RE, grepTree, runCli,
  NPM_DIR, expectedGeneralisedUrl, basicAuth, makeTempDir, isoDate, listFiles,
} from './harness.mjs';

const LIB_NAME = '@segment/analytics-node';
const JSON_TYPE = { 'Content-Type': 'application/json' };

function requireAnalytics() {
  const require = createRequire(path.join(NPM_DIR, 'package.json'));
  try {
    return require('@segment/analytics-node').Analytics;
  } catch (error) {
    throw new Error(`the @segment/analytics-node npm package is missing: run \`npm ci --prefix tests/npm\` (${error.message})`);
  }
}

// The profile updates in the write-ahead log, as `minpanel debug dump`
// prints them; the server must be stopped.
async function dumpLog(server) {
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
  return dumps.join('\n');
}

// What analytics-node's context adds to every stored event.
const SDK_PROPERTIES = { 'context.library.version': '3.1.0' };

describe('@segment/analytics-node over HTTP', () => {
  const Analytics = requireAnalytics();
  const run = randomTag('seg');
  const user = `user-${run}`;
  const anon = `anon-${run}`;
  const groupId = `acme-${run}`;
  const fakeEmail = `fake.person.${run}@example.test`;
  const fakeName = `Fakename ${run}`;
  const fakeStreet = `${run} Imaginary Lane`;
  const duplicateMessageId = `dup-${crypto.randomUUID()}`;
  let server;
  const sdkErrors = [];
  let captureStart;
  let captureEnd;
  let rows = [];

  const makeClient = (options = {}) => {
    const made = new Analytics({
      writeKey: server.project.token, host: `http://${server.host}`, flushAt: 1, flushInterval: 50, maxRetries: 0, ...options,
    });
    made.on('error', (error) => sdkErrors.push(error));
    return made;
  };

  before(async () => {
    server = await startServer({ projectName: 'segment-node' });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('sends track, identify, page, screen, group, alias and a duplicate messageId without an SDK error', async () => {
    captureStart = nowSeconds();
    const client = makeClient({ flushAt: 20 });
    client.identify({
      userId: user, anonymousId: anon,
      traits: { email: fakeEmail, name: fakeName, plan: 'pro', address: { street: fakeStreet, city: 'Leeds' } },
    });
    client.track({
      userId: user, event: 'Signed Up',
      properties: {
        case_id: `${run}-track`, plan: 'pro', seats: 3, trial: true, tags: ['a', 'b'],
        note: `write to ${fakeEmail} please`,
      },
    });
    client.page({
      userId: user, name: 'Pricing', category: 'Docs',
      properties: { case_id: `${run}-page`, url: 'https://app.example.test/pricing?utm_source=mail&token=secret' },
    });
    client.screen({ userId: user, name: 'Home', properties: { case_id: `${run}-screen` } });
    client.group({ userId: user, groupId, traits: { name: 'Acme', employees: 12 } });
    client.alias({ userId: user, previousId: anon });
    client.track({ userId: user, event: 'Viewed Page', messageId: duplicateMessageId, properties: { case_id: `${run}-dup` } });
    await client.closeAndFlush();
    // The same messageId again, from another client and request: stored once.
    const again = makeClient();
    again.track({ userId: user, event: 'Viewed Page', messageId: duplicateMessageId, properties: { case_id: `${run}-dup` } });
    again.track({ anonymousId: `other-${run}`, event: 'Viewed Page', properties: { case_id: `${run}-other` } });
    // A historical import is a past timestamp.
    for (let index = 0; index < 3; index += 1) {
      again.track({
        userId: user, event: 'Imported Event', properties: { case_id: `${run}-import-${index}`, index },
        timestamp: new Date(Date.UTC(2026, 0, 15, 12, 0, index)),
      });
    }
    await again.closeAndFlush();
    captureEnd = nowSeconds();
    assert.deepEqual(sdkErrors.map((error) => String(error && (error.reason || error.message) || error)), [], 'the SDK reported no error');
  });

  it('every message arrived exactly once, as the policy stores it', async () => {
    rows = (await server.exportEvents({ fromDate: '2026-01-01' }));
    const byCase = (caseId) => rows.filter((row) => row.properties.case_id === caseId);
    for (const row of rows) {
      assert.match(row.properties.distinct_id, PSEUDONYM_RE, `${row.event}: distinct_id is a pseudonym`);
      assert.match(row.properties.$insert_id, INSERT_ID_RE, `${row.event}: $insert_id`);
    }

    const [signedUp, ...extra] = byCase(`${run}-track`);
    assert.ok(signedUp, 'the track arrived');
    assert.equal(extra.length, 0, 'the track arrived once');
    assert.equal(signedUp.event, 'Signed Up');
    assert.ok(signedUp.properties.time >= captureStart - 2 && signedUp.properties.time <= captureEnd + 2,
      `time ${signedUp.properties.time} within [${captureStart}, ${captureEnd}] (sentAt clock-skew correction)`);
    assert.equal(signedUp.properties.mp_lib, LIB_NAME, 'context.library.name is the library field');
    assert.deepEqual(freeProperties(signedUp), {
      case_id: `${run}-track`, plan: 'pro', seats: 3, trial: true, tags: ['a', 'b'], note: 'write to [email] please',
      ...SDK_PROPERTIES,
    }, 'the email in a note redacted; integrations and _metadata not stored');
    const subject = signedUp.properties.distinct_id;

    const [page, ...extraPages] = byCase(`${run}-page`);
    assert.ok(page && extraPages.length === 0, 'the page once');
    assert.equal(page.event, '$pageview');
    assert.equal(page.properties.distinct_id, subject);
    assert.deepEqual(freeProperties(page), {
      case_id: `${run}-page`, name: 'Pricing', category: 'Docs',
      $current_url: expectedGeneralisedUrl('https://app.example.test/pricing?utm_source=mail&token=secret'),
      ...SDK_PROPERTIES,
    }, 'properties.url is the page URL, generalised by the policy');

    const [screen, ...extraScreens] = byCase(`${run}-screen`);
    assert.ok(screen && extraScreens.length === 0, 'the screen once');
    assert.equal(screen.event, '$screen');
    assert.equal(screen.properties.name, 'Home');

    const identify = rows.filter((row) => row.event === '$identify' && row.properties.distinct_id === subject);
    assert.equal(identify.length, 1, 'identify stored once, userId as the subject');
    assert.match(identify[0].properties.anonymousId, PSEUDONYM_RE, 'the anonymousId link is kept, pseudonymised');
    assert.notEqual(identify[0].properties.anonymousId, subject);
    assert.deepEqual(Object.keys(freeProperties(identify[0])).sort(), ['anonymousId', 'context.library.version'],
      'identify: its traits went to the profile, not the event');

    const alias = rows.filter((row) => row.event === '$create_alias' && row.properties.distinct_id === subject);
    assert.equal(alias.length, 1, 'alias stored once');
    assert.equal(alias[0].properties.previousId, identify[0].properties.anonymousId,
      'previousId: the same pseudonym as identify\'s anonymousId');

    const group = rows.filter((row) => row.event === '$groupidentify' && row.properties.distinct_id === subject);
    assert.equal(group.length, 1, 'group stored once');
    assert.match(group[0].properties.groupId, PSEUDONYM_RE, 'the group id is pseudonymised');

    assert.equal(byCase(`${run}-dup`).length, 1, 'the messageId sent twice is stored once');
    const other = byCase(`${run}-other`);
    assert.equal(other.length, 1, 'the anonymous visitor\'s event');
    assert.notEqual(other[0].properties.distinct_id, subject, 'anonymousId alone is its own subject');

    for (let index = 0; index < 3; index += 1) {
      const imported = byCase(`${run}-import-${index}`);
      assert.equal(imported.length, 1, `imported event ${index} once`);
      assert.ok(Math.abs(imported[0].properties.time - Date.UTC(2026, 0, 15, 12, 0, index) / 1000) < 2,
        `historical timestamp kept (within the skew correction): ${imported[0].properties.time}`);
    }
    assert.equal(rows.length, 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 3, `no other rows: ${JSON.stringify(rows.map((row) => row.event))}`);
  });

  it('/api/query counts each message once', async () => {
    // From yesterday: the SDK stamps the messages with the time it sends
    // them, and a run that passes midnight UTC would leave some of them
    // before a range that started today.
    const res = await server.request({
      method: 'POST', path: '/api/query', headers: { ...server.authHeader(), ...JSON_TYPE },
      body: JSON.stringify({
        kind: 'segmentation', from: isoDate(-1), to: isoDate(1), unit: 'day', measure: 'total',
        events: ['Signed Up', 'Viewed Page', '$pageview', '$screen', '$identify', '$create_alias', '$groupidentify'],
      }),
    });
    assert.equal(res.status, 200, res.text);
    const answer = JSON.parse(res.text);
    const totals = Object.fromEntries(answer.series.map((series) => [series.event, series.total]));
    assert.deepEqual(totals, {
      'Signed Up': 1, 'Viewed Page': 2, $pageview: 1, $screen: 1, $identify: 1, $create_alias: 1, $groupidentify: 1,
    }, JSON.stringify(answer));
  });

  it('traits reach the profiles without the name, email or address', async () => {
    const stopped = await server.stop('SIGTERM');
    assert.deepEqual(stopped, { code: 0, signal: null }, 'SIGTERM stops gracefully');
    const dump = await dumpLog(server);
    const profiles = dump.split('\n').filter((line) => /^\s*profile /.test(line));
    const people = profiles.filter((line) => line.includes('group_key= '));
    const groups = profiles.filter((line) => line.includes('group_key=groupId '));
    assert.equal(people.length, 1, `one person update:\n${profiles.join('\n')}`);
    assert.match(people[0], /profile \$set .*\{plan: "pro"\}$/, `identify's traits keep plan only:\n${people[0]}`);
    assert.equal(groups.length, 1, `one group update:\n${profiles.join('\n')}`);
    assert.match(groups[0], /name: "Acme", employees: 12/, 'group traits');

    const hits = await grepTree(server.dataDir, [fakeEmail, fakeName, fakeStreet, user, anon, groupId]);
    assert.deepEqual(hits, [], 'no email, name, street, user, anonymous or group id in clear in the data folder');
    for (const needle of [fakeEmail, fakeName, fakeStreet, user]) {
      assert.ok(!dump.includes(needle), `${needle} not in the log`);
      assert.ok(!server.stderr.includes(needle), `${needle} not in the server's stderr`);
    }
  });
});

// A proxy in front of the server that misbehaves on the first request as
// `firstMode` says: 'unavailable' answers 503 without forwarding; 'slow'
// forwards it (so it is stored) but answers only after `slowMs`, past the
// SDK's timeout. Later requests pass through.
async function startFlakyProxy(target, firstMode, { slowMs = 1500 } = {}) {
  const proxy = { requests: 0, retryCounts: [], server: null, port: 0 };
  proxy.server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      proxy.requests += 1;
      proxy.retryCounts.push(req.headers['x-retry-count'] || null);
      const first = proxy.requests === 1;
      if (first && firstMode === 'unavailable') {
        res.writeHead(503, { 'Content-Type': 'application/json' });
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

describe('@segment/analytics-node retries', () => {
  const run = randomTag('segretry');
  let server;

  before(async () => {
    server = await startServer({ projectName: 'segment-retry' });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  const countCase = async (caseId) => (await server.exportEvents()).filter((row) => row.properties.case_id === caseId).length;

  for (const [mode, caseSuffix, options] of [
    ['unavailable', '503', {}],
    ['slow', 'timeout', { httpRequestTimeout: 500 }],
  ]) {
    it(`${mode === 'slow' ? 'an answer later than httpRequestTimeout' : 'a 503'} is retried and the messages stored once, without an SDK error`, async () => {
      const Analytics = requireAnalytics();
      const proxy = await startFlakyProxy(server, mode);
      const errors = [];
      try {
        const client = new Analytics({
          writeKey: server.project.token, host: `http://127.0.0.1:${proxy.port}`, flushAt: 2, flushInterval: 50,
          maxRetries: 3, ...options,
        });
        client.on('error', (error) => errors.push(error));
        client.track({ userId: `retry-${run}`, event: 'Retried', properties: { case_id: `${run}-${caseSuffix}` } });
        client.identify({ userId: `retry-${run}`, traits: { plan: 'pro', case_id: `${run}-${caseSuffix}-identify` } });
        await client.closeAndFlush({ timeout: 20000 });
      } finally {
        await proxy.close();
      }
      assert.deepEqual(errors.map((error) => String(error && (error.reason || error.message) || error)), [], 'no SDK error');
      assert.equal(proxy.requests, 2, `the SDK sent the batch twice (X-Retry-Count ${JSON.stringify(proxy.retryCounts)})`);
      assert.deepEqual(proxy.retryCounts, [null, '1']);
      assert.equal(await countCase(`${run}-${caseSuffix}`), 1, 'stored once');
      const identifies = (await server.exportEvents()).filter((row) => row.event === '$identify');
      assert.equal(identifies.length, mode === 'slow' ? 2 : 1, 'the identify too, once per test');
    });
  }
});

describe('Segment routes over raw HTTP', () => {
  const run = randomTag('segraw');
  let server;
  let token;
  const message = (caseId, extra = {}) => ({
    type: 'track', event: 'raw event', userId: `raw-${run}`, messageId: crypto.randomUUID(),
    properties: { case_id: caseId }, ...extra,
  });
  const basic = () => ({ Authorization: basicAuth(`${token}:`) });
  const exportCases = async () => {
    const counts = new Map();
    for (const row of await server.exportEvents()) {
      counts.set(row.properties.case_id, (counts.get(row.properties.case_id) || 0) + 1);
    }
    return counts;
  };

  before(async () => {
    server = await startServer({ projectName: 'segment-raw' });
    token = server.project.token;
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('every route answers exactly 200 {"success":true} and stores each message once', async () => {
    const sent = [];
    const single = {
      track: { event: 'raw single' }, identify: { traits: { plan: 'pro' } }, page: { name: 'Home' }, screen: { name: 'Main' },
      group: { groupId: `org-${run}`, traits: { plan: 'team' } }, alias: { previousId: `prev-${run}` },
    };
    for (const [call, members] of Object.entries(single)) {
      for (const routePath of [`/v1/${call}`, `/v1/${call}/`, `/v1/${call[0]}`, ...(call === 'track' ? [] : [`/${call}`])]) {
        const caseId = `${run}-single-${routePath}`;
        sent.push(caseId);
        const res = await server.request({
          method: 'POST', path: routePath, headers: { ...JSON_TYPE, ...basic() },
          body: JSON.stringify({ userId: `raw-${run}`, messageId: crypto.randomUUID(), properties: { case_id: caseId }, ...members }),
        });
        assert.equal(res.status, 200, `${routePath}: ${res.text}`);
        assert.equal(res.text, '{"success":true}', routePath);
      }
    }
    // Batches: Basic auth or writeKey in the body; /v1/import is a batch too.
    for (const [routePath, headers, envelope] of [
      ['/v1/batch', basic(), {}],
      ['/v1/batch/', {}, { writeKey: token }],
      ['/v1/import', basic(), { writeKey: token }],
      ['/batch', basic(), {}],
      ['/batch/', {}, { writeKey: token, sentAt: new Date().toISOString() }],
    ]) {
      const caseId = `${run}-batch-${routePath}-${Object.keys(headers).length}`;
      sent.push(caseId);
      const res = await server.request({
        method: 'POST', path: routePath, headers: { ...JSON_TYPE, ...headers },
        body: JSON.stringify({ batch: [message(caseId)], ...envelope }),
      });
      assert.equal(res.status, 200, `${routePath}: ${res.text}`);
      assert.equal(res.text, '{"success":true}', routePath);
    }
    // A gzip body.
    const gzipCase = `${run}-gzip`;
    sent.push(gzipCase);
    let res = await server.request({
      method: 'POST', path: '/v1/batch', headers: { ...JSON_TYPE, ...basic(), 'Content-Encoding': 'gzip' },
      body: zlib.gzipSync(JSON.stringify({ batch: [message(gzipCase)] })),
    });
    assert.equal(res.status, 200, res.text);
    // PostHog keeps /batch: its envelope, without Basic auth or writeKey.
    const posthogCase = `${run}-posthog-on-batch`;
    sent.push(posthogCase);
    res = await server.request({
      method: 'POST', path: '/batch/', headers: JSON_TYPE,
      body: JSON.stringify({ api_key: token, batch: [{ event: 'ph', distinct_id: 'p', properties: { case_id: posthogCase, writeKey: 'x' } }] }),
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, '{"status":1}', 'a PostHog body on /batch is PostHog\'s');
    // The same messageId twice, in two requests: once.
    const dupCase = `${run}-dup`;
    sent.push(dupCase);
    const dup = message(dupCase);
    for (let attempt = 0; attempt < 2; attempt += 1) {
      res = await server.request({ method: 'POST', path: '/v1/track', headers: { ...JSON_TYPE, ...basic() }, body: JSON.stringify(dup) });
      assert.equal(res.status, 200, res.text);
    }
    const counts = await exportCases();
    for (const caseId of sent) {
      assert.equal(counts.get(caseId), 1, `${caseId} stored once`);
    }
  });

  it('refusals are 400 naming the field or limit, and store nothing of the request', async () => {
    const refused = [];
    const refuse = async (label, { routePath = '/v1/batch', headers = basic(), body }, expected) => {
      const res = await server.request({ method: 'POST', path: routePath, headers: { ...JSON_TYPE, ...headers }, body });
      assert.equal(res.status, 400, `${label}: ${res.status} ${res.text}`);
      assert.deepEqual(JSON.parse(res.text), { error: expected }, label);
    };
    const caseOf = (label) => {
      refused.push(`${run}-${label}`);
      return `${run}-${label}`;
    };

    // Segment's limits: 32 KB a message, 500 KB a request; answered 400,
    // which analytics-node drops instead of retrying or splitting.
    const big = message(caseOf('message-32k'), { properties: { case_id: `${run}-message-32k`, pad: 'x'.repeat(33000) } });
    await refuse('32 KB message', { body: JSON.stringify({ batch: [message(caseOf('before-big')), big] }) },
      `batch[1]: ${JSON.stringify(big).length} bytes of JSON, over Segment's limit of 32768 per message (kSegmentMessageBytesMax)`);
    const many = Array.from({ length: 20 }, (_, index) => message(caseOf(`batch-500k-${index}`), {
      properties: { case_id: `${run}-batch-500k-${index}`, pad: 'y'.repeat(30000) },
    }));
    const manyBody = JSON.stringify({ batch: many });
    await refuse('500 KB request', { body: manyBody },
      `body: ${manyBody.length} bytes of JSON, over Segment's limit of 512000 per request (kSegmentBatchBytesMax)`);
    await refuse('single route over 32 KB', { routePath: '/v1/track', body: JSON.stringify(big) },
      `message: ${JSON.stringify(big).length} bytes of JSON, over Segment's limit of 32768 per message (kSegmentMessageBytesMax)`);

    await refuse('bad type', { body: JSON.stringify({ batch: [message(caseOf('before-type')), { ...message(caseOf('type')), type: 'purchase' }] }) },
      'batch[1].type: must be one of track, identify, page, screen, group, alias');
    await refuse('no user', { body: JSON.stringify({ batch: [{ type: 'track', event: 'e', properties: { case_id: caseOf('no-user') } }] }) },
      'batch[0].userId: required, or anonymousId (one of them names the person)');
    await refuse('future timestamp', { body: JSON.stringify({ batch: [message(caseOf('future'), { timestamp: '2999-01-01T00:00:00Z' })] }) },
      'batch[0].timestamp: more than 3600 s in the future (kEventTimeFutureMaxMs)');
    await refuse('group without groupId', { routePath: '/v1/group', body: JSON.stringify({ userId: 'u', properties: { case_id: caseOf('group') } }) },
      'groupId: required on group');
    await refuse('type against the route', { routePath: '/v1/page', body: JSON.stringify(message(caseOf('route-type'))) },
      'type: must be "page" (or absent) on /v1/page');
    await refuse('no write key', { headers: {}, body: JSON.stringify({ batch: [message(caseOf('no-key'))] }) },
      'writeKey: missing (the project token as the Basic auth user or as writeKey)');
    await refuse('unknown write key', { headers: { Authorization: basicAuth(`wk-${run}:`) }, body: JSON.stringify({ batch: [message(caseOf('wrong-key'))] }) },
      'writeKey: not the token of any project');
    await refuse('two write keys', { body: JSON.stringify({ batch: [message(caseOf('two-keys'))], writeKey: `wk-${run}` }) },
      'writeKey: a request must carry one write key (Basic auth and body agree)');
    await refuse('no batch', { body: JSON.stringify({ writeKey: token }) }, 'batch: required, an array of messages');
    await refuse('empty body', { routePath: '/v1/track', body: '' }, 'body: empty (send the message as JSON)');
    await refuse('not JSON', { routePath: '/v1/track', body: '{"event":' }, 'body: malformed JSON: The JSON document has an improper structure: missing or superfluous commas, braces, missing keys, etc.');

    const counts = await exportCases();
    for (const caseId of refused) {
      assert.equal(counts.get(caseId), undefined, `${caseId}: nothing of a refused request is stored`);
    }
  });

  it('credentialed CORS on the Segment routes, and preflights', async () => {
    const origin = 'http://shop.example.test';
    let res = await server.request({
      method: 'POST', path: '/v1/t', headers: { ...JSON_TYPE, Origin: origin },
      body: JSON.stringify({ ...message(`${run}-cors`), writeKey: token }),
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers['access-control-allow-origin'], origin);
    assert.equal(res.headers['access-control-allow-credentials'], 'true');
    res = await server.request({
      method: 'POST', path: '/v1/batch', headers: { ...JSON_TYPE, Origin: origin }, body: '{"batch":[{}]}',
    });
    assert.equal(res.status, 400);
    assert.equal(res.headers['access-control-allow-origin'], origin, 'a refusal carries CORS too');
    res = await server.request({
      method: 'OPTIONS', path: '/v1/batch',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,authorization' },
    });
    assert.equal(res.status, 204);
    assert.equal(res.headers['access-control-allow-origin'], origin);
    assert.equal(res.headers['access-control-allow-headers'], 'content-type,authorization');
    assert.match(res.headers['access-control-allow-methods'], /POST/);
  });
});

describe('path prefixes', () => {
  const run = randomTag('prefix');
  let server;

  before(async () => {
    server = await startServer({ projectName: 'prefixes', configText: 'path_prefixes = ["/mp", "/ingest", "/proxy/analytics"]\n' });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('/mp/track, /ingest/e and /proxy/analytics/v1/batch reach the same handlers; other paths do not', async () => {
    const token = server.project.token;
    const Analytics = requireAnalytics();
    const errors = [];
    const client = new Analytics({
      writeKey: token, host: `http://${server.host}`, path: '/proxy/analytics/v1/batch', flushAt: 1, maxRetries: 0,
    });
    client.on('error', (error) => errors.push(error));
    client.track({ userId: 'u', event: 'prefixed', properties: { case_id: `${run}-segment` } });
    await client.closeAndFlush();
    assert.deepEqual(errors, []);

    const mixpanelData = (insertId) => encodeURIComponent(Buffer.from(JSON.stringify([{
      event: 'prefixed', properties: { token, distinct_id: 'u', case_id: `${run}-mixpanel`, $insert_id: insertId },
    }])).toString('base64'));
    const mixpanel = mixpanelData('prefixed-1');
    let res = await server.request({ path: `/mp/track?data=${mixpanel}` });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, '1');
    res = await server.request({
      method: 'POST', path: '/ingest/e/', headers: JSON_TYPE,
      body: JSON.stringify({ api_key: token, batch: [{ event: 'prefixed', distinct_id: 'u', properties: { case_id: `${run}-posthog` } }] }),
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.text, '{"status":1}');
    res = await server.request({ path: '/mp/healthz' });
    assert.equal(res.status, 200, 'every route, not only ingestion');
    res = await server.request({
      method: 'OPTIONS', path: '/ingest/i/v0/e/', headers: { Origin: 'http://app.example.test', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(res.status, 204, 'a preflight through a prefix');
    // Unprefixed paths keep working; a prefix is whole segments only.
    res = await server.request({ path: `/track?data=${mixpanelData('unprefixed-1')}` });
    assert.equal(res.status, 200, res.text);
    res = await server.request({ path: `/mpx/track?data=${mixpanelData('mpx-1')}` });
    assert.equal(res.status, 404, res.text);
    res = await server.request({ path: `/ingest/mp/track?data=${mixpanelData('double-1')}` });
    assert.equal(res.status, 404, 'one stripping step only');

    const rows = await server.exportEvents();
    const counts = (caseId) => rows.filter((row) => row.properties.case_id === caseId).length;
    assert.equal(counts(`${run}-segment`), 1);
    assert.equal(counts(`${run}-posthog`), 1);
    assert.equal(counts(`${run}-mixpanel`), 2, 'the prefixed and the unprefixed /track');
  });

  it('a prefix that would hide a route, or is malformed, is refused at start-up', async () => {
    const root = await makeTempDir('minpanel-prefix-');
    try {
      for (const [prefix, expected] of [
        ['/api', "config: 'path_prefixes' entry '/api' would hide minpanel's own /api routes: choose another first segment"],
        ['/v1/x', "config: 'path_prefixes' entry '/v1/x' would hide minpanel's own /v1 routes: choose another first segment"],
        ['mp', "config: 'path_prefixes' entry 'mp' must be '/' then 1 to 63 characters of [A-Za-z0-9._~/-], without a trailing '/' or '//' (kPathPrefixBytesMax)"],
        ['/mp/', "config: 'path_prefixes' entry '/mp/' must be '/' then 1 to 63 characters of [A-Za-z0-9._~/-], without a trailing '/' or '//' (kPathPrefixBytesMax)"],
      ]) {
        let failure = null;
        try {
          await runCli(['serve', '--data', path.join(root, 'data'), '--keys', path.join(root, 'keys'),
            '--listen', '127.0.0.1:0', '--path-prefix', prefix], { timeoutMs: 10000 });
        } catch (error) {
          failure = error;
        }
        assert.ok(failure, `${prefix}: serve refused to start`);
        assert.ok(String(failure.stderr || failure.message).includes(expected), `${prefix}: ${failure.stderr || failure.message}`);
      }
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});

// The privacy canary (issue 3) through the Segment routes: personal data
// planted in every place a Segment message can carry it is searched for —
// as itself, URL-encoded and as unsalted SHA-256/MD5 hex — in every byte of
// the data folder, the write-ahead log dumps, the server's stderr and the
// export.
describe('privacy canary through the Segment routes', () => {
  const b64url = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const EMAIL = 'sam.canary@example.test';
  const NAME = 'Ottoline Featherstonehaugh';
  const FIRST_NAME = 'Ottoline';
  const PHONE = '+1 202 555 0163';
  const CARD = '4111 1111 1111 1111';
  const IBAN = 'GB82 WEST 1234 5698 7654 32';
  const STREET = '17 Canary Wharfside Mews';
  const BIRTHDAY = '1987-03-14';
  const JWT = [b64url({ alg: 'HS256', typ: 'JWT' }), b64url({ sub: 'seg-canary', name: NAME }), 'c2lnbmF0dXJlLXNlZy1jYW5hcnk'].join('.');
  const API_KEY = 'sk-proj-S3gCaNaRy9LkP4mRw8ZcY1hJd6FsA3eGu0TqWoIbNvXyK5rMl';
  const URL_TOKEN = 'Wm4ScanaryQx8Tn2';
  const USER_ID = 'seg-canary-user-4417';
  const ANON_ID = 'seg-canary-anon-9023';
  const DEVICE_ID = 'seg-canary-device-6610';
  const AD_ID = 'seg-canary-adid-38f1e2';
  const GROUP_ID = 'seg-org-canary-55102';
  const CLIENT_IP = '8.8.4.4';
  const LATITUDE = 51.50735123;
  const USER_AGENT = `CanarySegment/3.0 (+mailto:${EMAIL}; ${PHONE})`;
  const PAGE_URL = `https://app.example.test/billing?token=${API_KEY}&email=${encodeURIComponent(EMAIL)}` +
    `&session=${URL_TOKEN}&utm_source=news#${URL_TOKEN}`;
  const REFERRER = `https://mail.example.test/inbox?u=${encodeURIComponent(EMAIL)}&t=${URL_TOKEN}`;
  const SEARCH = `?token=${API_KEY}&session=${URL_TOKEN}`;
  const PLANTED = {
    EMAIL, NAME, PHONE, CARD, IBAN, STREET, BIRTHDAY, JWT, API_KEY, URL_TOKEN, USER_ID, ANON_ID, DEVICE_ID, AD_ID,
    GROUP_ID, CLIENT_IP, LATITUDE: String(LATITUDE), USER_AGENT, PAGE_URL, REFERRER, SEARCH,
  };
  const needles = Object.entries(PLANTED).flatMap(([label, value]) => {
    const forms = [value, encodeURIComponent(value)];
    for (const algorithm of ['sha256', 'md5']) {
      const hex = crypto.createHash(algorithm).update(value, 'utf8').digest('hex');
      forms.push(hex, hex.toUpperCase());
    }
    return [...new Set(forms)].map((text) => ({ label, text, bytes: Buffer.from(text) }));
  });
  const run = randomTag('segcanary');
  let server;

  before(async () => {
    server = await startServer({ projectName: 'segment-canary', configText: 'log_level = "trace"\naccess_log = true\n' });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('nothing planted comes back; ordinary values and placeholders do', async () => {
    const token = server.project.token;
    const context = {
      ip: CLIENT_IP, userAgent: USER_AGENT, locale: 'en-GB',
      page: { url: PAGE_URL, referrer: REFERRER, search: SEARCH, path: '/billing', title: 'Billing' },
      library: { name: 'analytics.js', version: '5.2.0' },
      device: { id: DEVICE_ID, advertisingId: AD_ID, model: 'Pixel 9' },
      location: { latitude: LATITUDE, longitude: -0.12775829, country: 'GB' },
      traits: { email: EMAIL, name: NAME, phone: PHONE },
      groupId: GROUP_ID,
    };
    const properties = {
      case_id: `${run}-canary`, plan: 'pro', seats: 3, email: EMAIL,
      note: `call ${PHONE} or mail ${EMAIL}; card ${CARD}; IBAN ${IBAN}`,
      support: `Authorization: Bearer ${JWT} key=${API_KEY}`,
    };
    const traits = {
      email: EMAIL, name: NAME, firstName: FIRST_NAME, phone: PHONE, birthday: BIRTHDAY,
      address: { street: STREET, city: 'Leeds' }, plan: 'pro', bio: `reach me at ${EMAIL}`,
    };
    const batch = {
      writeKey: token, sentAt: new Date().toISOString(), context: { ip: CLIENT_IP, userAgent: USER_AGENT },
      batch: [
        { type: 'track', event: `Shared report with ${EMAIL}`, userId: USER_ID, anonymousId: ANON_ID, messageId: crypto.randomUUID(), properties, context },
        { type: 'page', userId: USER_ID, anonymousId: ANON_ID, name: 'Billing', properties: { ...properties, url: PAGE_URL, referrer: REFERRER, search: SEARCH } },
        { type: 'identify', userId: USER_ID, anonymousId: ANON_ID, traits, context },
        { type: 'group', userId: USER_ID, groupId: GROUP_ID, traits: { name: 'Acme Canary', billing_email: EMAIL, iban: IBAN } },
        { type: 'alias', userId: USER_ID, previousId: ANON_ID },
        { type: 'screen', anonymousId: ANON_ID, name: 'Settings', properties },
      ],
    };
    let res = await server.request({
      method: 'POST', path: '/v1/batch', headers: { ...JSON_TYPE, 'User-Agent': USER_AGENT, 'X-Forwarded-For': CLIENT_IP },
      body: JSON.stringify(batch),
    });
    assert.equal(res.status, 200, res.text);
    res = await server.request({
      method: 'POST', path: '/v1/identify', headers: { ...JSON_TYPE, Authorization: basicAuth(`${token}:`) },
      body: JSON.stringify({ userId: USER_ID, traits: { email: EMAIL, address: { street: STREET } }, context }),
    });
    assert.equal(res.status, 200, res.text);

    const rows = await server.exportEvents();
    assert.equal(rows.length, 7, 'seven events');
    const track = rows.find((row) => row.properties.case_id === `${run}-canary` && row.event !== '$pageview' && row.event !== '$screen');
    assert.equal(track.event, 'Shared report with [email]', 'the email in an event name is redacted');
    assert.equal(track.properties.plan, 'pro');
    assert.equal(track.properties.seats, 3);
    assert.equal(track.properties['context.locale'], 'en-GB');
    assert.equal(track.properties['context.device.model'], 'Pixel 9');
    assert.equal(track.properties['context.location.country'], 'GB');
    assert.equal(track.properties.$current_url, 'https://app.example.test/billing?utm_source=news');
    assert.equal(track.properties.note, 'call [phone] or mail [email]; card [card]; IBAN [iban]');
    assert.match(track.properties.anonymousId, PSEUDONYM_RE);
    assert.match(track.properties.$device_id, PSEUDONYM_RE);
    assert.match(track.properties.groupId, PSEUDONYM_RE);
    const page = rows.find((row) => row.event === '$pageview');
    assert.equal(page.properties.$current_url, 'https://app.example.test/billing?utm_source=news');

    const stopped = await server.stop('SIGTERM');
    assert.deepEqual(stopped, { code: 0, signal: null });
    const locations = [{ location: 'export', bytes: Buffer.from(JSON.stringify(rows)) }];
    for (const file of await listFiles(server.dataDir)) {
      locations.push({ location: path.relative(server.dataDir, file), bytes: await fsp.readFile(file) });
      if ((file.endsWith('.log') && file.includes(`${path.sep}wal${path.sep}`)) || file.endsWith('.prof')) {
        locations.push({ location: `debug dump ${path.basename(file)}`, bytes: Buffer.from((await runCli(['debug', 'dump', file])).stdout) });
      }
    }
    locations.push({ location: 'stderr', bytes: Buffer.concat(server.stderrChunks) });
    const dump = locations.filter((item) => item.location.startsWith('debug dump')).map((item) => item.bytes.toString()).join('\n');
    assert.match(dump, /profile \$set .*plan: "pro"/, 'the positive control: the ordinary trait is in the log');
    const hits = [];
    for (const { location, bytes } of locations) {
      for (const needle of needles) {
        const at = bytes.indexOf(needle.bytes);
        if (at !== -1) {
          hits.push(`${needle.label} in ${location}: ${JSON.stringify(bytes.subarray(Math.max(0, at - 60), at + needle.bytes.length + 60).toString('latin1'))}`);
        }
      }
    }
    assert.deepEqual(hits, [], `planted data found:\n${hits.slice(0, 20).join('\n')}`);
  });
});
