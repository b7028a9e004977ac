// The data map (issue 8, "Must show": a data-map test on a known mix of
// traffic, checking every row; docs/privacy.md, "The data map") through the
// real server: generated events and profiles from the real Mixpanel node SDK
// (/track, /engage), PostHog's /batch/ and Segment's /v1/track as raw HTTP,
// with keys of each kind and a project's retention and consent settings.
// GET /api/datamap must list exactly the sources and keys sent — each with
// its category, the policy's action, what is stored, volume, first and last
// seen, who may read it — and the readers and recipients; the keys that look
// personal are logged once by name and detector (never a value) and counted
// in /metrics; the Markdown and HTML forms escape what the clients named and
// fetch nothing; after a restart `minpanel datamap` prints the same map
// from the catalogue in the data folder, which holds no value; and a key
// whose only event the project's retention dropped is listed as no longer
// stored, with when and until when the record keeps it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { basicAuth, grepTree, quietLogger, requireMixpanel, runCli, sleep, startServer } from './harness.mjs';

const PROJECT = 'datamap-shop';
const CONFIG = `log_level = "info"\naudit_retention_days = 90\n` +
  `[projects.${PROJECT}]\nretention_days = 400\nevent_retention_days = { "$pageview" = 30 }\nconsent = "anonymous"\n`;

// Generated people only.
const EMAIL = 'gen.datamap.1@example.test';
const PHONE = '+1 202 555 0143';
const CARD = '4111 1111 1111 1111';
const HOSTILE_KEY = '<img src=x onerror=alert(1)>|k';

describe('the data map', () => {
  let server;
  const keys = {};
  const startMs = Date.now();
  let map;

  const cliKey = async (args) => {
    const { stdout } = await runCli(['keys', 'create', ...args, '--data', server.dataDir, '--keys', server.keysDir]);
    return JSON.parse(stdout.trim());
  };
  const get = (requestPath, secret = server.project.secret) =>
    server.request({ path: requestPath, headers: server.authHeader(secret) });

  before(async () => {
    server = await startServer({ projectName: PROJECT, configText: CONFIG });
    keys.analyst = await cliKey(['--name', 'analyst', '--project', PROJECT, '--scope', 'query:aggregate', '--property', 'plan']);
    keys.exporter = await cliKey(['--name', 'exporter', '--project', PROJECT, '--scope', 'export']);
    keys.ingest = await cliKey(['--name', 'ingest-only', '--project', PROJECT, '--scope', 'ingest']);
    keys.revoked = await cliKey(['--name', 'revoked', '--project', PROJECT, '--scope', 'admin']);
    await runCli(['keys', 'revoke', keys.revoked.id, '--data', server.dataDir, '--keys', server.keysDir]);
    await server.reload();

    // The Mixpanel node SDK: two events (/track) and a profile (/engage).
    const Mixpanel = requireMixpanel();
    const client = Mixpanel.init(server.project.token, { protocol: 'http', host: server.host, logger: quietLogger });
    const track = (properties) => new Promise((resolve, reject) => {
      client.track('Signed Up', properties, (error) => (error ? reject(error) : resolve()));
    });
    await track({ distinct_id: 'gen-dm-1', plan: 'pro', $email: EMAIL, company_id: 'gen-org-1', note: `call ${PHONE}` });
    await track({ distinct_id: 'gen-dm-2', plan: 'free', [HOSTILE_KEY]: 1 });
    await new Promise((resolve, reject) => {
      client.people.set('gen-dm-1', { $name: 'Gen Datamap', plan: 'pro' }, (error) => (error ? reject(error) : resolve()));
    });

    // PostHog's /batch/: a page view with its URL, referrer and library.
    let res = await server.request({
      method: 'POST', path: '/batch/', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        api_key: server.project.token,
        batch: [{
          event: '$pageview', distinct_id: 'gen-dm-3',
          properties: { $current_url: 'https://shop.example.test/p/42?ref=mail', $referrer: 'https://search.example.test/?q=shoes', $lib: 'web' },
        }],
      }),
    });
    assert.equal(res.status, 200, res.text);

    // Segment's /v1/track: a purchase with a card number in a property.
    res = await server.request({
      method: 'POST', path: '/v1/track',
      headers: { 'Content-Type': 'application/json', Authorization: basicAuth(`${server.project.token}:`) },
      body: JSON.stringify({
        userId: 'gen-dm-4', event: 'Paid', properties: { amount: 42, paid_with: CARD },
        context: { library: { name: 'analytics-node', version: '3.1.0' }, ip: '192.0.2.10' },
      }),
    });
    assert.equal(res.status, 200, res.text);

    res = await get('/api/datamap');
    assert.equal(res.status, 200, res.text);
    map = JSON.parse(res.text);
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  // Every row the traffic above must produce, and nothing else. `readers`:
  // who may read it (the analyst key is limited to `plan`; the exporter has
  // no query:subjects but reads subjects in exports).
  const ALL = ['secret', 'analyst', 'exporter'];
  const NOT_ANALYST = ['secret', 'exporter'];
  const EXPECTED_PROPERTIES = [
    { kind: 'context', key: 'distinct_id', category: 'internal id', signals: [], action: 'pseudonymise', why: /always/, stored: /keyed pseudonym/, volume: 4, readers: NOT_ANALYST },
    { kind: 'context', key: 'ip', category: 'location', signals: [], action: 'generalise', why: /policy: ip/, stored: /country, region and city.*discarded/, volume: 2, readers: NOT_ANALYST },
    { kind: 'context', key: 'library', category: 'device', signals: [], action: 'keep', why: /policy: library/, stored: /as sent \(mp_lib\)/, volume: 4, readers: NOT_ANALYST },
    { kind: 'context', key: 'page_url', category: 'behavioural', signals: [], action: 'generalise', why: /policy: page_url/, stored: /scheme, host and path/, volume: 1, readers: NOT_ANALYST },
    { kind: 'context', key: 'referrer', category: 'referrer', signals: [], action: 'generalise', why: /policy: referrer/, stored: /the host only/, volume: 1, readers: NOT_ANALYST },
    { kind: 'event', key: '$email', category: 'contact', signals: ['name:email', 'value:email'], action: 'drop', why: /named for a person/, stored: /^not stored$/, volume: 1, readers: NOT_ANALYST },
    // Added by the Mixpanel node SDK to each event.
    { kind: 'event', key: '$lib_version', category: 'behavioural', signals: [], action: 'redact', why: /detectors/, stored: /as sent, with what the detectors find/, volume: 2, readers: NOT_ANALYST },
    { kind: 'event', key: HOSTILE_KEY, category: 'behavioural', signals: [], action: 'redact', why: /detectors/, stored: /as sent/, volume: 1, readers: NOT_ANALYST },
    { kind: 'event', key: 'amount', category: 'behavioural', signals: [], action: 'redact', why: /detectors/, stored: /as sent/, volume: 1, readers: NOT_ANALYST },
    { kind: 'event', key: 'company_id', category: 'internal id', signals: [], action: 'pseudonymise', why: /an id of a person or organisation/, stored: /keyed pseudonym/, volume: 1, readers: NOT_ANALYST },
    // Segment's context, flattened by its decoder (docs/formats/segment-http.md).
    { kind: 'event', key: 'context.library.version', category: 'behavioural', signals: [], action: 'redact', why: /detectors/, stored: /as sent/, volume: 1, readers: NOT_ANALYST },
    { kind: 'event', key: 'note', category: 'free text', signals: ['value:phone'], action: 'redact', why: /detectors/, stored: /replaced by its kind/, volume: 1, readers: NOT_ANALYST },
    { kind: 'event', key: 'paid_with', category: 'payment', signals: ['value:card'], action: 'redact', why: /detectors/, stored: /replaced by its kind/, volume: 1, readers: NOT_ANALYST },
    { kind: 'event', key: 'plan', category: 'behavioural', signals: [], action: 'redact', why: /detectors/, stored: /as sent/, volume: 2, readers: ALL },
    { kind: 'profile', key: '$name', category: 'identity', signals: ['name:full_name'], action: 'drop', why: /named for a person/, stored: /^not stored$/, volume: 1, readers: NOT_ANALYST },
    { kind: 'profile', key: 'plan', category: 'behavioural', signals: [], action: 'redact', why: /detectors/, stored: /as sent/, volume: 1, readers: ALL },
  ];
  const EXPECTED_SOURCES = [
    { route: 'mixpanel /engage', sdk: '', volume: 1 },
    { route: 'mixpanel /track', sdk: 'node', volume: 2 },
    { route: 'posthog capture', sdk: 'web', volume: 1 },
    { route: 'segment', sdk: 'analytics-node', volume: 1 },
  ];
  const idOf = (name) => (name === 'secret' ? 'secret' : keys[name].id);

  const checkSeen = (row, what) => {
    assert.ok(row.first_seen_ms >= startMs - 1000 && row.first_seen_ms <= Date.now(), `${what}: first seen ${row.first_seen_ms}`);
    assert.ok(row.last_seen_ms >= row.first_seen_ms && row.last_seen_ms <= Date.now(), `${what}: last seen`);
  };

  const checkProperties = (project) => {
    assert.deepEqual(project.properties.map((row) => `${row.kind} ${row.key}`),
      EXPECTED_PROPERTIES.map((row) => `${row.kind} ${row.key}`), 'exactly the keys sent, sorted');
    EXPECTED_PROPERTIES.forEach((expected, index) => {
      const row = project.properties[index];
      const what = `${expected.kind} ${expected.key}`;
      assert.equal(row.category, expected.category, what);
      assert.deepEqual(row.signals, expected.signals, what);
      assert.equal(row.personal, expected.signals.length > 0, what);
      assert.equal(row.action, expected.action, what);
      assert.match(row.why, expected.why, what);
      assert.match(row.stored_as, expected.stored, what);
      assert.equal(row.volume, expected.volume, what);
      assert.deepEqual(row.readable_by, expected.readers.map(idOf), what);
      checkSeen(row, what);
    });
  };

  it('lists every source and every key sent, with what the policy stores of each', () => {
    assert.equal(map.format, 'minpanel-datamap-report');
    assert.equal(map.projects.length, 1);
    const [project] = map.projects;
    assert.equal(project.id, server.project.id);
    assert.equal(project.name, PROJECT);
    assert.equal(project.time_zone, 'UTC');
    assert.equal(project.policy_version, 0, 'the built-in policy');
    assert.deepEqual(project.sources.map(({ route, sdk, volume }) => ({ route, sdk, volume })), EXPECTED_SOURCES);
    project.sources.forEach((row) => checkSeen(row, row.route));
    checkProperties(project);
    assert.equal(project.uncatalogued_sightings, 0);
  });

  it('states retention, readers and recipients from the configuration and the keys', () => {
    const [project] = map.projects;
    assert.deepEqual(project.retention, {
      events_days: 400, event_rules: [{ event: '$pageview', days: 30 }], profiles: 'kept until erased',
      consent: 'anonymous', audit_days: 90,
    });
    // The ingest-only key reads nothing; the revoked key is not in force.
    assert.deepEqual(project.readers, [
      { id: 'secret', name: 'the project secret', scopes: 'ingest,query:aggregate,query:subjects,export,admin,audit:read,metrics',
        all_projects: false, events: [], properties: [], expires_ms: 0 },
      { id: keys.analyst.id, name: 'analyst', scopes: 'query:aggregate', all_projects: false, events: [], properties: ['plan'], expires_ms: 0 },
      { id: keys.exporter.id, name: 'exporter', scopes: 'export', all_projects: false, events: [], properties: [], expires_ms: 0 },
    ]);
    assert.deepEqual(project.recipients.map((row) => [row.where.split(' (')[0], row.who]), [
      ['the export API', ['secret', keys.exporter.id]],
      ['POST /api/query, the dashboard', ['secret', keys.analyst.id]],
      ['access requests', ['secret']],
      ['none: minpanel forwards nothing', []],
    ]);
  });

  it('logs each personal-looking key once, by name and detector, never a value, and counts it', async () => {
    const warnings = server.stderr.split('\n').filter((line) => line.includes('data map: new'));
    assert.deepEqual(warnings.map((line) => /new (\w+ property '[^']+')/.exec(line)[1]).sort(), [
      "event property '$email'", "event property 'note'", "event property 'paid_with'", "profile property '$name'",
    ]);
    assert.ok(warnings.some((line) => line.includes("'note' in project 'datamap-shop' looks personal (value:phone)")), warnings.join('\n'));
    for (const value of [EMAIL, PHONE, CARD, '+12025550143', 'Gen Datamap']) {
      assert.ok(!server.stderr.includes(value), `the log never holds ${value}`);
    }
    const metrics = await get('/metrics');
    assert.equal(metrics.status, 200);
    assert.match(metrics.text, /^minpanel_datamap_personal_keys_total 4$/m);
    assert.match(metrics.text, /^minpanel_datamap_uncatalogued_sightings_total 0$/m);
  });

  it('writes Markdown and one inert HTML page, escaping what the clients named', async () => {
    const html = await get('/api/datamap?format=html');
    assert.equal(html.status, 200, html.text);
    assert.match(html.headers['content-type'], /^text\/html/);
    assert.match(html.headers['content-security-policy'], /default-src 'none'/);
    assert.ok(html.text.includes('&lt;img src=x onerror=alert(1)&gt;|k'));
    assert.ok(!html.text.includes('<img'), 'no markup from a client');
    assert.ok(!/<script|<link|\bsrc=|https?:/i.test(html.text.replace(/&lt;img src=x/g, '')), 'nothing to run or fetch');
    assert.ok(html.text.includes('<h3>Properties seen</h3>'));
    const markdown = await get('/api/datamap?format=markdown');
    assert.equal(markdown.status, 200, markdown.text);
    assert.match(markdown.text, /^# Data map/);
    assert.match(markdown.text, /\| event \| note \| free text \| value:phone \| redact \|/);
    assert.ok(!markdown.text.includes('<img') && !markdown.text.includes('>|k'), 'escaped');
    const bad = await get('/api/datamap?format=pdf');
    assert.equal(bad.status, 400);
    assert.match(JSON.parse(bad.text).error, /format/);
    const refused = await get('/api/datamap', keys.analyst.secret);
    assert.equal(refused.status, 403, 'admin scope');
  });

  it('keeps the catalogue across a restart, holding no value, and `minpanel datamap` prints the same', async () => {
    await server.stop();
    const hits = await grepTree(server.dataDir, [EMAIL, PHONE, CARD, 'gen-dm-1', 'Gen Datamap', 'shop.example.test']);
    assert.deepEqual(hits.filter((hit) => hit.file === 'datamap.json'), [], 'the catalogue holds names only');
    const catalogue = JSON.parse(await fsp.readFile(path.join(server.dataDir, 'datamap.json'), 'utf8'));
    assert.equal(catalogue.format, 'minpanel-datamap');
    const { stdout } = await runCli(['datamap', '--project', PROJECT, '--format', 'json', '--data', server.dataDir, '--keys', server.keysDir]);
    const offline = JSON.parse(stdout);
    checkProperties(offline.projects[0]);
    assert.deepEqual(offline.projects[0].sources, map.projects[0].sources);
    const out = path.join(server.root, 'datamap.md');
    await runCli(['datamap', '--out', out, '--data', server.dataDir, '--keys', server.keysDir]);
    assert.match(await fsp.readFile(out, 'utf8'), /## Project datamap-shop/);
  });

  // Keys no longer stored (docs/privacy.md, "Keys no longer stored"): an
  // imported event past the project's 400 days is the only one carrying
  // `gen_old_coupon`; the retention drop at the next start hides its day's
  // segment whole, and the map says the key is not stored any more (and
  // keeps it in the record), while every other key stays stored.
  it('says which keys retention left no stored event carrying, and keeps them listed', async () => {
    await server.start();
    const now = Math.round(Date.now() / 1000);
    const res = await server.importJson([
      { event: 'Old Order', properties: { distinct_id: 'gen-dm-5', time: now - 500 * 86400, $insert_id: 'gen-dm-old-1', gen_old_coupon: 'c-1', plan: 'pro' } },
      { event: 'Old Order', properties: { distinct_id: 'gen-dm-6', time: now - 86400, $insert_id: 'gen-dm-old-2', plan: 'free' } },
    ]);
    assert.equal(res.status, 200, res.text);
    let project = JSON.parse((await get('/api/datamap')).text).projects[0];
    assert.equal(project.properties.find((row) => row.key === 'gen_old_coupon').gone_ms, null, 'stored until retention runs');
    // Past the catalogue's 5-second margin, then a restart: the start applies retention.
    await sleep(5500);
    await server.stop();
    const restartMs = Date.now();
    await server.start();
    project = JSON.parse((await get('/api/datamap')).text).projects[0];
    const coupon = project.properties.find((row) => row.key === 'gen_old_coupon');
    assert.ok(coupon, 'still listed: the record of what was collected');
    assert.equal(coupon.volume, 1);
    const match = /^not stored: every event carrying it was past the project's retention \(400 days\); gone at (\d+) ms, listed here until (\d+) ms$/.exec(coupon.stored_as);
    assert.ok(match, coupon.stored_as);
    assert.equal(Number(match[1]), coupon.gone_ms);
    assert.ok(coupon.gone_ms >= restartMs && coupon.gone_ms <= Date.now(), `gone at ${coupon.gone_ms}`);
    assert.equal(Number(match[2]) - coupon.gone_ms, 400 * 86400 * 1000, 'listed for the project\'s 400 days');
    assert.deepEqual(project.properties.filter((row) => row.gone_ms !== null).map((row) => row.key), ['gen_old_coupon'],
      'every other key is still held by a stored event');
    assert.match(project.properties.find((row) => row.kind === 'event' && row.key === 'plan').stored_as, /^as sent/);
    assert.match(server.stderr, /data map: keys of project 'datamap-shop' no longer stored \(retention\): 1$/m);
    const markdown = await get('/api/datamap?format=markdown');
    assert.match(markdown.text, /\| event \| gen&#95;old&#95;coupon \|[^\n]*\| not stored: every event carrying it was past the project&#39;s retention \(400 days\)/);
    await server.stop();
    const catalogue = JSON.parse(await fsp.readFile(path.join(server.dataDir, 'datamap.json'), 'utf8'));
    assert.equal(catalogue.version, 2);
    const item = catalogue.items.find((row) => row.name === 'gen_old_coupon');
    assert.equal(item.gone_why, 'retention');
    assert.equal(item.gone_ms, coupon.gone_ms);
  });
});
