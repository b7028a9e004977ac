// Export guardrails on the real server (issue 6; docs/security.md, "Export
// reasons" and "Anomaly rules"): an export that may return more rows than
// [limits] export_reason_rows needs a `reason` (400 naming it, bounded,
// no control characters, no personal data), kept in its export.start audit
// record only; the anomaly rules raise an alert — a log line without the
// address, a /metrics counter per rule, a POST to a real local webhook
// listener, an audit record — and suspend the key until an admin enables it
// (POST /api/keys/<id>/enable, audited); with `suspend` on, the rules that
// need not the export's size (a new address, an unusual hour, the export
// that completes a burst) refuse it before any row leaves. A key's history is its file in
// <data>/key_usage, written here as days of generated history, so that the
// rules past the warm-up can be shown without waiting days.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import http from 'node:http';
import { once } from 'node:events';
import path from 'node:path';

import { createProject, freePort, hex32, isoDate, nowSeconds, parseJsonLines, runCli, sleep, startServer } from './harness.mjs';

const USERS = 30;
const EVENTS_PER_USER = 3;  // 90 rows, over the reason threshold of 50
const HOUR_MS = 3600 * 1000;
const DAY_MS = 24 * HOUR_MS;

describe('export reasons and anomaly rules', () => {
  let server;
  let webhook;
  const alerts = [];
  let adminSecret;

  const createKey = async (spec) => {
    const res = await server.request({
      method: 'POST', path: '/api/keys', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ project_id: server.project.id, ...spec }),
    });
    assert.equal(res.status, 201, res.text);
    return JSON.parse(res.text);
  };
  const exportWith = (secret, params = {}, headers = {}) => {
    const query = new URLSearchParams({ from_date: isoDate(-3), to_date: isoDate(1), ...params });
    return server.request({ path: `/api/2.0/export?${query}`, headers: { ...server.authHeader(secret), ...headers } });
  };
  const auditRecords = async (act) => {
    const res = await server.request({ path: `/api/audit?act=${act}&limit=1000`, headers: server.authHeader(adminSecret) });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text);
  };
  const metric = async (line) => {
    const res = await server.request({ path: '/metrics', headers: server.authHeader() });
    assert.equal(res.status, 200, res.text);
    const found = res.text.split('\n').find((text) => text.startsWith(line));
    return found === undefined ? 0 : Number(found.split(' ').pop());
  };
  const alertsFor = async (keyId, count) => {
    for (let attempt = 0; attempt < 200; attempt += 1) {
      const mine = alerts.filter((alert) => alert.key === keyId);
      if (mine.length >= count) {
        return mine;
      }
      await sleep(25);
    }
    return alerts.filter((alert) => alert.key === keyId);
  };
  // Days of generated history for a key: `rows` rows in each of `hours`
  // (hours of the day, UTC) of each of the last `days` days, from an
  // address the server has not seen (its hashes are keyed: a test cannot
  // make one).
  const writeHistory = async (keyId, { days = 10, hours = [...Array(24).keys()], rows = 1 }) => {
    const nowHour = Math.floor(Date.now() / HOUR_MS);
    const buckets = [];
    for (let day = days; day >= 1; day -= 1) {
      const dayStart = Math.floor((nowHour - day * 24) / 24) * 24;
      for (const hour of hours) {
        buckets.push([dayStart + hour, 1, rows, rows]);
      }
    }
    buckets.sort((left, right) => left[0] - right[0]);
    const folder = path.join(server.dataDir, 'key_usage');
    await fsp.mkdir(folder, { recursive: true });
    // A project secret's file is secret-N.json (no colon in a file name).
    await fsp.writeFile(path.join(folder, `${keyId.replace(':', '-')}.json`), JSON.stringify({
      format: 'minpanel-key-usage', version: 1, key: keyId, first_ms: Date.now() - days * DAY_MS,
      hours: buckets, addresses: [],
    }));
  };

  before(async () => {
    webhook = http.createServer((req, res) => {
      const chunks = [];
      req.on('data', (chunk) => chunks.push(chunk));
      req.on('end', () => {
        alerts.push({ path: req.url, ...JSON.parse(Buffer.concat(chunks).toString('utf8')) });
        res.writeHead(204).end();
      });
    });
    const webhookPort = await freePort();
    webhook.listen(webhookPort, '127.0.0.1');
    await once(webhook, 'listening');
    server = await startServer({
      projectName: 'guardrails-it',
      configText: 'trusted_proxies = ["127.0.0.1"]\n[limits]\nexport_reason_rows = 50\n' +
        '[anomaly]\nvolume_factor = 10\nvolume_rows_min = 20\nburst_exports = 4\nburst_window_s = 120\n' +
        `burst_rows_max = 1000\nwarmup_days = 7\nsuspend = true\nwebhook = "http://127.0.0.1:${webhookPort}/hook"\n`,
    });
    const events = [];
    for (let user = 0; user < USERS; user += 1) {
      for (let repeat = 0; repeat < EVENTS_PER_USER; repeat += 1) {
        events.push({ event: 'guarded', properties: { distinct_id: `generated-${user}`, time: nowSeconds(), $insert_id: hex32() } });
      }
    }
    const res = await server.importJson(events);
    assert.equal(res.status, 200, res.text);
    const { stdout } = await runCli(['keys', 'create', '--name', 'guard-admin', '--admin', '--json',
      '--data', server.dataDir, '--keys', server.keysDir]);
    adminSecret = JSON.parse(stdout.trim()).secret;
    await server.reload();
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
    if (webhook) {
      webhook.close();
    }
  });

  it('a large export without a reason is refused before anything streams, naming the field', async () => {
    const res = await exportWith(undefined);
    assert.equal(res.status, 400, res.text);
    const { error } = JSON.parse(res.text);
    assert.match(error, /^reason: this export may return up to \d+ rows, more than the 50 \(limits\.export_reason_rows\)/);
    // Under the threshold (a limit bounds it), no reason is needed.
    const small = await exportWith(undefined, { limit: '40', watermark: 'false' });
    assert.equal(small.status, 200, small.text);
    assert.equal(parseJsonLines(small.text).length, 40);
  });

  it('a bad reason is refused: too long, control characters, personal data', async () => {
    const long = await exportWith(undefined, { reason: 'x'.repeat(257) });
    assert.equal(long.status, 400, long.text);
    assert.match(JSON.parse(long.text).error, /^reason: at most 256 bytes \(kExportReasonBytesMax\)/);
    const control = await exportWith(undefined, { reason: 'quarterly\nreview' });
    assert.equal(control.status, 400, control.text);
    assert.match(JSON.parse(control.text).error, /^reason: control characters are not allowed/);
    const email = await exportWith(undefined, { reason: 'asked by someone@example.com' });
    assert.equal(email.status, 400, email.text);
    assert.match(JSON.parse(email.text).error, /^reason: holds what looks like/);
  });

  it('the reason is kept in the export.start audit record, and nowhere in the server log', async () => {
    const reason = `quarterly churn review ${hex32().slice(0, 8)}`;
    const res = await exportWith(undefined, { reason, watermark: 'false' });
    assert.equal(res.status, 200, res.text);
    assert.equal(parseJsonLines(res.text).length, USERS * EVENTS_PER_USER);
    const starts = await auditRecords('export.start');
    const mine = starts.filter((record) => record.reason === reason);
    assert.equal(mine.length, 1, JSON.stringify(starts.slice(-3)));
    assert.equal(mine[0].key, `secret:${server.project.id}`);
    assert.ok(!server.stderr.includes(reason));
  });

  it('the export that completes a burst is refused before it starts, the key suspended; an admin enables it', async () => {
    const key = await createKey({ name: 'bursty', scopes: ['export'] });
    for (let exportIdx = 0; exportIdx < 3; exportIdx += 1) {
      const res = await exportWith(key.secret, { limit: '5' });
      assert.equal(res.status, 200, `export ${exportIdx}: ${res.text}`);
    }
    // The fourth small export (its limit proves it small) would complete
    // the burst: 403 naming the rule, and not a row sent.
    const fourth = await exportWith(key.secret, { limit: '5' });
    assert.equal(fourth.status, 403, fourth.text);
    assert.match(JSON.parse(fourth.text).error, /^anomaly: this export breaks the rule 'burst' \(4 exports of at most 1000 rows within 120 s\); it was refused before anything was sent/);
    const [alert] = await alertsFor(key.id, 1);
    assert.ok(alert, 'no alert reached the webhook');
    assert.equal(alert.path, '/hook');
    assert.equal(alert.rule, 'burst');
    assert.equal(alert.suspended, true);
    assert.equal(alert.project_id, server.project.id);
    // The key is new: the rules that compare with its history are warming up.
    assert.deepEqual((await alertsFor(key.id, 1)).map((item) => item.rule), ['burst']);
    const refused = await exportWith(key.secret, { limit: '5' });
    assert.equal(refused.status, 403, refused.text);
    assert.match(JSON.parse(refused.text).error, /suspended by the anomaly rule 'burst'/);
    assert.equal(await metric('minpanel_anomaly_alerts_total{rule="burst"}'), 1);
    assert.ok(await metric('minpanel_keys_suspended_total') >= 1);
    assert.match(server.stderr, new RegExp(`anomaly: key ${key.id} of project \\d+ broke the rule 'burst'`));
    const anomalies = await auditRecords('anomaly');
    assert.ok(anomalies.some((record) => record.target === key.id && record.reason.startsWith('burst: ')));
    assert.ok((await auditRecords('key.suspend')).some((record) => record.target === key.id));
    // Enabled by an admin, audited; it exports again.
    const enabled = await server.request({ method: 'POST', path: `/api/keys/${key.id}/enable`, headers: server.authHeader(adminSecret) });
    assert.equal(enabled.status, 200, enabled.text);
    assert.equal(JSON.parse(enabled.text).suspended_ms, 0);
    assert.ok((await auditRecords('key.enable')).some((record) => record.target === key.id));
    assert.equal((await exportWith(key.secret, { limit: '5' })).status, 200);
  });

  it('past the warm-up, an export from a new client address is refused before it starts; a vetted one is not', async () => {
    const key = await createKey({ name: 'roaming', scopes: ['export'] });
    await writeHistory(key.id, {});
    const first = await exportWith(key.secret, { limit: '5' }, { 'X-Forwarded-For': '198.51.100.7' });
    assert.equal(first.status, 403, first.text);
    assert.match(JSON.parse(first.text).error, /^anomaly: this export breaks the rule 'address' /);
    assert.ok(!first.text.includes('"distinct_id"'), 'a row left before the refusal');
    const [alert] = await alertsFor(key.id, 1);
    assert.equal(alert?.rule, 'address', JSON.stringify(alerts));
    assert.ok(!server.stderr.includes('198.51.100.7'), 'the address reached the log');
    assert.equal((await exportWith(key.secret, { limit: '5' })).status, 403);
    // Enabled on the command line this time; the server takes it on SIGHUP
    // and records the change.
    const { stdout } = await runCli(['keys', 'enable', key.id, '--data', server.dataDir, '--keys', server.keysDir]);
    assert.equal(JSON.parse(stdout.trim()).suspended_ms, 0);
    await server.reload();
    assert.ok((await auditRecords('key.enable')).some((record) => record.target === key.id && record.route === 'reload'));
    // The refused address was vetted when the admin enabled the key.
    const again = await exportWith(key.secret, { limit: '5' }, { 'X-Forwarded-For': '198.51.100.7' });
    assert.equal(again.status, 200, again.text);
    const other = await exportWith(key.secret, { limit: '5' }, { 'X-Forwarded-For': '203.0.113.9' });
    assert.equal(other.status, 403, other.text);
    const rules = (await alertsFor(key.id, 2)).map((item) => item.rule);
    assert.deepEqual(rules, ['address', 'address']);
    // The history on disk keeps hashes, never the address.
    const history = await fsp.readFile(path.join(server.dataDir, 'key_usage', `${key.id}.json`), 'utf8');
    assert.ok(!history.includes('198.51.100') && !history.includes('203.0.113'));
    assert.equal(JSON.parse(history).addresses.length, 2);
  });

  it('past the warm-up, an unusual hour and a volume far over the usual raise alerts', async () => {
    const hourNow = new Date().getUTCHours();
    const hoursKey = await createKey({ name: 'night-owl', scopes: ['export'] });
    // Every hour of the day but this one and its neighbours (the test may
    // straddle an hour).
    const usualHours = [...Array(24).keys()].filter((hour) => Math.abs(hour - hourNow) > 1 && Math.abs(hour - hourNow) < 23);
    await writeHistory(hoursKey.id, { hours: usualHours });
    const night = await exportWith(hoursKey.secret, { limit: '5' });
    assert.equal(night.status, 403, night.text);
    assert.match(JSON.parse(night.text).error, /'hours' \(an export at \d+:00 UTC/);
    const hourRules = (await alertsFor(hoursKey.id, 2)).map((item) => item.rule);
    assert.ok(hourRules.includes('hours'), JSON.stringify(hourRules));

    const volumeKey = await createKey({ name: 'hoarder', scopes: ['export'] });
    // Ten days of exports of no rows: the usual level is 0, so the bound is
    // the floor (volume_rows_min = 20), and 90 rows cross it. Its first
    // export comes from an address the history does not know: refused, and
    // vetted once an admin enables the key. The volume is known only at the
    // export's end: judged after it.
    await writeHistory(volumeKey.id, { rows: 0 });
    assert.equal((await exportWith(volumeKey.secret, { reason: 'volume rule test' })).status, 403);
    const enabled = await server.request({ method: 'POST', path: `/api/keys/${volumeKey.id}/enable`, headers: server.authHeader(adminSecret) });
    assert.equal(enabled.status, 200, enabled.text);
    const res = await exportWith(volumeKey.secret, { reason: 'volume rule test' });
    assert.equal(res.status, 200, res.text);
    // Every row, and the watermark's decoys.
    assert.ok(parseJsonLines(res.text).length > USERS * EVENTS_PER_USER, res.text.slice(0, 200));
    const volumeAlerts = await alertsFor(volumeKey.id, 2);
    assert.deepEqual(volumeAlerts.map((item) => item.rule), ['address', 'volume']);
    // The rules count the rows the export's audit record counts: the real
    // ones, not the decoys mixed into the file.
    const [exported] = (await auditRecords('export')).filter((record) => record.act === 'export' && record.key === volumeKey.id);
    assert.equal(exported?.rows, USERS * EVENTS_PER_USER);
    assert.match(volumeAlerts[1].detail, new RegExp(`^${exported.rows} rows and ${exported.subjects} subjects in `));
    const history = JSON.parse(await fsp.readFile(path.join(server.dataDir, 'key_usage', `${volumeKey.id}.json`), 'utf8'));
    assert.equal(history.hours.reduce((sum, bucket) => sum + bucket[2], 0), exported.rows);
    assert.ok(await metric('minpanel_anomaly_alerts_total{rule="volume"}') >= 1);
    assert.ok(await metric('minpanel_anomaly_alerts_total{rule="hours"}') >= 1);
  });
  it('watches the project secret too: an unusual hour alerts, but the secret is never refused nor suspended', async () => {
    // A project of its own, whose secret has not exported yet (the server
    // reads a history when the credential first exports).
    const project = await createProject(server.dataDir, server.keysDir, 'guardrails-secret');
    await server.reload();
    const events = [];
    for (let user = 0; user < 8; user += 1) {
      events.push({ event: 'guarded', properties: { distinct_id: `generated-owner-${user}`, time: nowSeconds(), $insert_id: hex32() } });
    }
    for (let attempt = 0; ; attempt += 1) {
      const res = await server.importJson(events, { secret: project.secret });
      if (res.status === 200 || attempt === 100) {
        assert.equal(res.status, 200, res.text);
        break;
      }
      await sleep(50);
    }
    const secretId = `secret:${project.id}`;
    const hourNow = new Date().getUTCHours();
    const usualHours = [...Array(24).keys()].filter((hour) => Math.abs(hour - hourNow) > 1 && Math.abs(hour - hourNow) < 23);
    await writeHistory(secretId, { hours: usualHours });
    // With suspend on, an access key would be refused before it starts;
    // the secret's export is served and judged after it.
    const first = await exportWith(project.secret, { watermark: 'false' });
    assert.equal(first.status, 200, first.text);
    assert.equal(parseJsonLines(first.text).length, 8);
    // An hour of the day and an address its history does not know.
    const raised = await alertsFor(secretId, 2);
    assert.deepEqual(raised.map((item) => [item.rule, item.suspended, item.project_id]),
      [['hours', false, project.id], ['address', false, project.id]]);
    assert.equal((await exportWith(project.secret, { watermark: 'false' })).status, 200, 'the secret exports again');
    const listed = await server.request({ path: `/api/alerts?key=${encodeURIComponent(secretId)}`, headers: server.authHeader(adminSecret) });
    assert.equal(listed.status, 200, listed.text);
    const body = JSON.parse(listed.text);
    assert.deepEqual(body.map((item) => [item.key, item.rule, item.suspended, item.key_state]),
      [[secretId, 'address', false, 'active'], [secretId, 'hours', false, 'active']]);
    assert.equal((await auditRecords('key.suspend')).filter((record) => record.target === secretId).length, 0);
    // Its history counts the two exports' real rows.
    const history = JSON.parse(await fsp.readFile(path.join(server.dataDir, 'key_usage', `secret-${project.id}.json`), 'utf8'));
    assert.equal(history.key, secretId);
    assert.equal(history.hours.reduce((sum, bucket) => sum + bucket[2], 0), usualHours.length * 10 + 16);
  });
});
