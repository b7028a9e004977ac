// Consent signals through the real server (docs/privacy.md, "Consent and
// signals"): a project's `consent` setting decides what /track and
// PostHog's /batch/ store for a request carrying `Sec-GPC: 1` or `DNT: 1` —
// everything (ignore), nothing (drop), or the event without its subject and
// without any pseudonymised property (anonymous) — and requests without a
// signal are stored as ever. The setting changes with SIGHUP.
// Retention (docs/privacy.md, "Retention") is applied when the server
// starts, before its first request, not only by its minute timer: a folder
// opened with a rule that hides some of its events shows none of them to
// the first export. (The rules' hourly steps and the profile expiry are
// tested with a fake clock in src/service/retention_test.cc.)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';

import { isoDate, nowSeconds, parseJsonLines, randomTag, runCli, sleep, startServer } from './harness.mjs';

const PROJECT = 'consent-shop';
const ZERO_SUBJECT = `psn_${'0'.repeat(32)}`;

function configFor(consent) {
  return `log_level = "info"\n[projects.${PROJECT}]\nconsent = "${consent}"\n`;
}

describe('consent signals', () => {
  let server;
  before(async () => {
    server = await startServer({ projectName: PROJECT, configText: configFor('drop') });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  async function track(name, headers) {
    const event = {
      event: name,
      properties: { token: server.project.token, distinct_id: 'user-consent-1', company_id: 'acme-1', plan: 'pro' },
    };
    const res = await server.request({
      method: 'POST',
      path: '/track?verbose=1',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', ...headers },
      body: `data=${encodeURIComponent(JSON.stringify(event))}`,
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(JSON.parse(res.text).status, 1, res.text);
  }

  async function postHogBatch(name, headers) {
    const res = await server.request({
      method: 'POST',
      path: '/batch/',
      headers: { 'Content-Type': 'application/json', ...headers },
      body: JSON.stringify({
        api_key: server.project.token,
        batch: [{ event: name, distinct_id: 'user-consent-2', properties: { plan: 'team' } }],
      }),
    });
    assert.equal(res.status, 200, res.text);
  }

  async function stored(name) {
    return (await server.exportEvents()).filter((row) => row.event === name);
  }

  async function metric(metricName) {
    const res = await server.request({ path: '/metrics', headers: server.authHeader() });
    const line = res.text.split('\n').find((text) => text.startsWith(`${metricName} `));
    return line === undefined ? NaN : Number(line.split(' ')[1]);
  }

  async function reconfigure(consent) {
    await fsp.writeFile(server.configFile, configFor(consent));
    const before = await metric('minpanel_consent_events_anonymous_total');
    process.kill(server.pid, 'SIGHUP');
    // The reload is asynchronous: probe with a signalled event until it
    // is handled under the new setting.
    for (let attempt = 0; attempt < 100; attempt += 1) {
      await sleep(50);
      const probe = randomTag('probe');
      await track(probe, { 'Sec-GPC': '1' });
      const rows = await stored(probe);
      if (consent === 'ignore' && rows.length === 1 && rows[0].properties.distinct_id !== ZERO_SUBJECT) {
        return;
      }
      if (consent === 'anonymous' && (await metric('minpanel_consent_events_anonymous_total')) > before) {
        return;
      }
    }
    assert.fail(`consent = "${consent}" not in force after SIGHUP`);
  }

  it('drop: signalled events are answered as usual and not stored; others are', async () => {
    const dropped = randomTag('gpc');
    await track(dropped, { 'Sec-GPC': '1' });
    await track(dropped, { DNT: '1' });
    await postHogBatch(dropped, { 'Sec-GPC': '1' });
    const kept = randomTag('plain');
    await track(kept, {});
    await track(kept, { 'Sec-GPC': '0', DNT: '0' });
    assert.equal((await stored(dropped)).length, 0);
    assert.equal((await stored(kept)).length, 2);
    assert.equal(await metric('minpanel_consent_events_dropped_total'), 3);
  });

  it('anonymous: signalled events are stored without subject or pseudonymised ids', async () => {
    await reconfigure('anonymous');
    const name = randomTag('anon');
    await track(name, { DNT: '1' });
    await postHogBatch(name, { 'Sec-GPC': '1' });
    const rows = await stored(name);
    assert.equal(rows.length, 2);
    for (const row of rows) {
      assert.equal(row.properties.distinct_id, ZERO_SUBJECT, JSON.stringify(row));
      assert.equal(row.properties.company_id, undefined, JSON.stringify(row));
      for (const value of Object.values(row.properties)) {
        if (typeof value === 'string' && value !== ZERO_SUBJECT) {
          assert.ok(!value.startsWith('psn_'), JSON.stringify(row));
        }
      }
    }
    assert.deepEqual(rows.map((row) => row.properties.plan).sort(), ['pro', 'team']);
    // Without a signal the same person keeps their pseudonym and group.
    const plain = randomTag('plain');
    await track(plain, {});
    const [row] = await stored(plain);
    assert.notEqual(row.properties.distinct_id, ZERO_SUBJECT);
    assert.ok(row.properties.company_id.startsWith('psn_'));
  });

  it('ignore: signalled events are stored as any other', async () => {
    await reconfigure('ignore');
    const name = randomTag('ignored');
    await track(name, { 'Sec-GPC': '1', DNT: '1' });
    const [row] = await stored(name);
    assert.notEqual(row.properties.distinct_id, ZERO_SUBJECT);
    assert.ok(row.properties.company_id.startsWith('psn_'));
  });
});

describe('retention at start', () => {
  let server;
  before(async () => {
    server = await startServer({ projectName: 'retention-start', configText: 'log_level = "info"\n' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('hides the events past a rule from the first export after a start', async () => {
    const name = randomTag('kept-or-not');
    const now = nowSeconds();
    const events = [3, 2, 0.1, 0].map((ageDays, idx) => ({
      event: name,
      properties: { distinct_id: `user-r${idx}`, time: Math.round(now - ageDays * 86400), $insert_id: `${name}-${idx}`, seq: idx },
    }));
    const res = await server.importJson(events);
    assert.equal(res.status, 200, res.text);
    const all = await server.exportEvents({ fromDate: '2020-01-01', event: [name] });
    assert.equal(all.length, 4);
    await server.stop();
    await fsp.writeFile(server.configFile,
      'log_level = "info"\n[projects.retention-start]\nretention_days = 1\n');
    await server.start();
    // The first request after /healthz: the timer's first pass is a
    // minute away.
    const rows = await server.exportEvents({ fromDate: '2020-01-01', event: [name] });
    assert.deepEqual(rows.map((row) => row.properties.seq).sort(), [2, 3]);
  });
});

// The command line reads a stopped folder without a server's start: it
// applies the rules of the configuration it is given before it reads, so a
// rule the server never ran with hides the same events from `minpanel
// export`, `query` and `access-request` as from the server's first request.
describe('retention on the command line', () => {
  let server;
  before(async () => {
    server = await startServer({ projectName: 'retention-cli', configText: 'log_level = "info"\n' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('hides the events past a rule from the command line reads of a stopped folder', async () => {
    const name = randomTag('cli-kept-or-not');
    const now = nowSeconds();
    const events = [3, 2, 0.1, 0].map((ageDays, idx) => ({
      event: name,
      properties: { distinct_id: 'user-cli', time: Math.round(now - ageDays * 86400), $insert_id: `${name}-${idx}`, seq: idx },
    }));
    const res = await server.importJson(events);
    assert.equal(res.status, 200, res.text);
    assert.equal((await server.exportEvents({ fromDate: '2020-01-01', event: [name] })).length, 4);
    await server.stop();
    const folders = ['--data', server.dataDir, '--keys', server.keysDir];
    const exportArgs = ['export', '--project', 'retention-cli', '--from', '2020-01-01', '--to', isoDate(2),
      '--event', name, '--no-watermark', ...folders];
    // Without a rule the command line reads all four.
    const unruled = parseJsonLines((await runCli(exportArgs)).stdout);
    assert.equal(unruled.length, 4);
    await fsp.writeFile(server.configFile,
      'log_level = "info"\n[projects.retention-cli]\nretention_days = 1\n');
    const withConfig = ['--config', server.configFile];
    const exported = parseJsonLines((await runCli([...exportArgs, ...withConfig])).stdout);
    assert.deepEqual(exported.map((row) => row.properties.seq).sort(), [2, 3]);
    const queryFile = `${server.root}/count.json`;
    await fsp.writeFile(queryFile, JSON.stringify({
      kind: 'segmentation', from: isoDate(-10), to: isoDate(1), unit: 'day', events: [name], measure: 'total',
    }));
    const answer = JSON.parse((await runCli(['query', queryFile, '--project', 'retention-cli', '--no-k',
      ...folders, ...withConfig])).stdout);
    assert.equal(answer.series[0].total, 2, JSON.stringify(answer));
    const held = JSON.parse((await runCli(['access-request', '--project', 'retention-cli',
      '--distinct-id', 'user-cli', ...folders, ...withConfig])).stdout);
    assert.deepEqual(held.events.filter((event) => event.event === name).map((event) => event.properties.seq).sort(),
      [2, 3]);
  });
});
