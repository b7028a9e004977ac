// The dashboard's project picker, live events, privacy, audit, saved
// reports and pinned dashboard (issue 9) in real headless Chromium against
// the real server with generated events: a server-wide key picks one of two
// projects; live events mark the values the policy changed (a redacted
// email, a generalised URL, a pseudonymised organisation id); the privacy
// preview shows a dropped property; an export made with another key appears
// in the audit view with the chain verified; an access key's export that
// breaks an anomaly rule (window_rows, with suspend on) appears among the
// audit view's alerts with its key suspended, and the admin enables the key
// from there (GET /api/alerts, POST /api/keys/<id>/enable); a saved and pinned report
// reopens from the dashboard with the API's numbers. The dashboard API's
// own answers are checked over HTTP too (docs/formats/dashboard-api.md).
// With MINPANEL_SCREENSHOTS=1 it also writes docs/dashboard-{projects,live,
// privacy,datamap,audit,dashboard,reports}.png.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';

import { createProject, hex32, isoDate, REPO_ROOT, runCli, sleep, startServer } from './harness.mjs';
import { closeAll, launchChromium } from './browser.mjs';

const DAY_MS = 86400000;
const NOW_MS = Date.now();

// Generated users (never real people): 12 sign-ups in the last two days,
// each with a note that holds a made-up email, a page URL with a query and
// an organisation id.
function events() {
  const list = [];
  for (let user = 0; user < 12; user += 1) {
    list.push({
      event: 'Signed Up',
      properties: {
        distinct_id: `gen-user-${user}`, time: NOW_MS - DAY_MS - user * 60000, $insert_id: hex32(),
        plan: user % 2 ? 'free' : 'pro', note: `write to gen-${user}@example.test`,
        $current_url: `https://shop.example.test/welcome?ref=${user}#top`, company_id: `gen-org-${user % 3}`,
        $email: `gen-${user}@example.test`,
      },
    });
  }
  return list;
}

const shoot = process.env.MINPANEL_SCREENSHOTS === '1';

describe('the dashboard views in Chromium', () => {
  let server;
  let browser;
  let origin;
  let adminKey;
  let exportKey;

  before(async () => {
    // Any export of more than 5 rows by an access key breaks the rule
    // window_rows and suspends the key (docs/security.md, "Anomaly rules").
    server = await startServer({ projectName: 'views-it', configText: '[anomaly]\nwindow_rows_max = 5\nsuspend = true\n' });
    const res = await server.importJson(events());
    assert.equal(res.status, 200, res.text);
    await createProject(server.dataDir, server.keysDir, 'views-other');
    const { stdout } = await runCli(['keys', 'create', '--name', 'views-admin', '--admin', '--data', server.dataDir, '--keys', server.keysDir]);
    adminKey = /mpk_[0-9a-f]+_[0-9a-f]{32,}/.exec(stdout)[0];
    const made = await runCli(['keys', 'create', '--name', 'views-exporter', '--project', 'views-it', '--scope', 'export',
      '--json', '--data', server.dataDir, '--keys', server.keysDir]);
    exportKey = JSON.parse(made.stdout.trim().split('\n').pop());
    await server.reload();
    origin = `http://${server.host}`;
    browser = await launchChromium();
  });
  after(async () => {
    await closeAll(() => browser && browser.close(), () => server && server.stop());
  });

  const get = async (apiPath, key = server.project.secret) => {
    const res = await server.request({ path: apiPath, headers: server.authHeader(key) });
    return { status: res.status, body: res.text ? JSON.parse(res.text) : null, text: res.text };
  };

  it('answers the dashboard API over HTTP', async () => {
    let res = await get('/api/projects', adminKey);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body.map((project) => project.name).sort(), ['views-it', 'views-other']);
    assert.ok(!res.text.includes(server.project.token) && !/secret/.test(res.text), 'no token or secret listed');
    res = await get('/api/projects');
    assert.deepEqual(res.body.map((project) => project.name), ['views-it'], 'a project secret reaches its project only');
    res = await get('/api/names');
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body.events, [{ name: 'Signed Up', count: 12 }]);
    assert.ok(res.body.properties.some((item) => item.key === 'plan' && item.count === 12), res.text);
    assert.ok(!res.body.properties.some((item) => item.key === '$email'), 'a dropped property is not a known key');
    res = await get('/api/events/live?limit=5');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.events.length, 5);
    const newest = res.body.events[0];
    assert.equal(newest.properties.distinct_id ?? newest.distinct_id, newest.distinct_id);
    assert.match(newest.distinct_id, /^psn_[0-9a-f]{32}$/);
    assert.equal(newest.properties.note, 'write to [email]');
    assert.equal(newest.marks['properties.note'].change, 'redacted');
    assert.match(newest.marks['properties.note'].why, /email/);
    assert.equal(newest.marks['properties.$current_url'].change, 'generalised');
    assert.equal(newest.marks['properties.company_id'].change, 'pseudonymised');
    assert.equal(newest.marks['properties.plan'], undefined, 'a value kept as sent has no mark');
    assert.ok(!res.text.includes('@example.test') && !res.text.includes('gen-user-'), 'no raw value');
    assert.equal((await get('/api/events/live?limit=201')).status, 400);
    res = await get('/api/audit/status');
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.ok, true, res.text);
    assert.ok(res.body.records > 0);
    // Saved reports: bad bodies name the field; another project sees none.
    const post = (body, key = server.project.secret) => server.request({
      method: 'POST', path: '/api/reports', headers: { ...server.authHeader(key), 'Content-Type': 'application/json' }, body,
    });
    res = await post(JSON.stringify({ name: 'x', view: 'sql', state: {} }));
    assert.equal(res.status, 400);
    assert.match(res.text, /view/);
    res = await post(JSON.stringify({ name: 'x', view: 'insights', state: { filter: 'gen-9@example.test' } }));
    assert.equal(res.status, 400, 'personal data is not saved');
    assert.match(res.text, /state: holds what looks like email/);
    res = await post(JSON.stringify({ name: 'HTTP report', view: 'insights', state: { events: ['Signed Up'] } }));
    assert.equal(res.status, 201, res.text);
    const report = JSON.parse(res.text);
    const other = await get(`/api/reports/${report.id}?project_id=2`, adminKey);
    assert.equal(other.status, 404, other.text);
    const put = await server.request({
      method: 'PUT', path: `/api/reports/${report.id}`, headers: server.authHeader(),
      body: JSON.stringify({ ...report, name: 'Renamed' }),
    });
    assert.equal(put.status, 200, put.text);
    assert.equal(JSON.parse(put.text).name, 'Renamed');
    const removed = await server.request({ method: 'DELETE', path: `/api/reports/${report.id}`, headers: server.authHeader() });
    assert.equal(removed.status, 200, removed.text);
    assert.equal((await get(`/api/reports/${report.id}`)).status, 404);

    // Anomaly alerts: the export key's export (12 events and the watermark's
    // decoys) breaks window_rows (5) and suspends it; the next is refused.
    res = await get('/api/alerts', adminKey);
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.body, [], 'no alert before the export');
    const exportPath = `/api/2.0/export?from_date=${isoDate(-3)}&to_date=${isoDate(1)}`;
    let exported = await server.request({ path: exportPath, headers: server.authHeader(exportKey.secret) });
    assert.equal(exported.status, 200, exported.text);
    exported = await server.request({ path: exportPath, headers: server.authHeader(exportKey.secret) });
    assert.equal(exported.status, 403, exported.text);
    assert.match(exported.text, /suspended by the anomaly rule 'window_rows'/);
    res = await get('/api/alerts', adminKey);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.length, 1, res.text);
    const [alert] = res.body;
    assert.equal(alert.key, exportKey.id);
    assert.equal(alert.project_id, server.project.id);
    assert.equal(alert.rule, 'window_rows');
    assert.match(alert.detail, /^(1[2-9]|[2-9]\d) rows in 24 h, over 5$/);
    assert.equal(alert.suspended, true);
    assert.equal(alert.key_state, 'suspended');
    assert.ok(Math.abs(alert.time_ms - Date.now()) < 60000, res.text);
    // Filters, and the project's own secret sees its project's alerts.
    assert.equal((await get(`/api/alerts?key=${exportKey.id}&rule=window_rows`, adminKey)).body.length, 1);
    assert.deepEqual((await get('/api/alerts?rule=burst', adminKey)).body, []);
    assert.deepEqual((await get(`/api/alerts?from_ms=${Date.now() + 60000}`, adminKey)).body, []);
    assert.equal((await get('/api/alerts')).body.length, 1, 'the project secret holds audit:read');
    for (const [query, field] of [['rule=volumes', /rule:/], ['key=secret:one', /key:/], ['limit=1001', /kAlertsListedMax/],
      ['limit=x', /limit:/], ['from_ms=soon', /from_ms/]]) {
      res = await get(`/api/alerts?${query}`, adminKey);
      assert.equal(res.status, 400, `${query}: ${res.text}`);
      assert.match(res.body.error, field);
    }
  });

  it('picks a project, marks policy changes, shows an export and an alert in the audit view and reopens a pinned report', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const problems = [];
    const requests = [];
    page.on('request', (request) => requests.push(request.url()));
    page.on('pageerror', (error) => problems.push(error.message));
    await page.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (event) => window.__cspViolations.push(event.violatedDirective));
    });
    const save = async (name) => {
      if (shoot) await page.screenshot({ path: path.join(REPO_ROOT, 'docs', `dashboard-${name}.png`) });
    };
    try {
      // Sign in with the server-wide key and no project id: the picker.
      await page.goto(`${origin}/`, { waitUntil: 'load' });
      await page.getByLabel('Project key', { exact: true }).fill(adminKey);
      await page.getByLabel('Project key', { exact: true }).press('Enter');
      await page.getByRole('heading', { name: 'Choose a project' }).waitFor({ timeout: 15000 });
      await save('projects');
      await page.getByRole('button', { name: 'views-it' }).click();
      await page.getByRole('heading', { name: 'Insights' }).waitFor({ timeout: 15000 });
      assert.equal(await page.getByLabel('Project', { exact: true }).inputValue(), String(server.project.id));
      // The event name field offers the project's known names (GET /api/names).
      await page.locator('#minpanel-event-names option[value="Signed Up"]').waitFor({ state: 'attached', timeout: 15000 });
      assert.equal(await page.getByLabel('Event 1', { exact: true }).getAttribute('list'), 'minpanel-event-names');

      // Live events: the redacted note is marked, with its reason.
      await page.getByRole('link', { name: 'Live events' }).click();
      const redacted = page.locator('.marked.redacted').filter({ hasText: 'write to [email]' }).first();
      await redacted.waitFor({ timeout: 15000 });
      assert.match(await redacted.locator('.badge').getAttribute('aria-label'), /redacted by the policy: detectors: email/);
      assert.ok(await page.locator('.marked.generalised').count() > 0);
      assert.ok(await page.locator('.marked.pseudonymised').count() > 0);
      assert.ok(!(await page.content()).includes('@example.test'));
      await save('live');

      // Privacy: the built-in policy and the preview of the sample event.
      await page.getByRole('link', { name: 'Privacy' }).click();
      await page.getByRole('button', { name: 'Preview' }).click();
      const changes = page.locator('table.changes tbody tr').filter({ hasText: 'properties.$email' });
      await changes.waitFor({ timeout: 15000 });
      assert.match(await changes.textContent(), /dropped/);
      await save('privacy');

      // Data map: the keys the imports carried, each with what the policy
      // stores of it and why; the dropped email and the note whose values
      // held emails are personal; no value appears (GET /api/datamap).
      await page.getByRole('link', { name: 'Data map' }).click();
      const emailRow = page.locator('#datamap-properties tbody tr[data-key="$email"]');
      await emailRow.waitFor({ timeout: 15000 });
      assert.match(await emailRow.textContent(), /contact.*yes \(name:email, value:email\).*drop — named for a person.*not stored/);
      assert.match(await page.locator('#datamap-properties tbody tr[data-key="note"]').textContent(), /yes \(value:email\)/);
      assert.match(await page.locator('#datamap-properties tbody tr[data-key="company_id"]').textContent(),
        /internal id.*pseudonymise.*a keyed pseudonym/);
      assert.match(await page.locator('#datamap-sources tbody').textContent(), /mixpanel \/import/);
      assert.match(await page.locator('#datamap-readers tbody').textContent(), /views-admin/);
      assert.ok(!(await page.content()).includes('@example.test'));
      await save('datamap');

      // An export with the project secret (another key) shows in the audit view.
      const exported = await server.request({
        path: `/api/2.0/export?from_date=${isoDate(-3)}&to_date=${isoDate(1)}`, headers: server.authHeader(),
      });
      assert.equal(exported.status, 200, exported.text);
      await page.getByRole('link', { name: 'Audit' }).click();
      await page.getByLabel('Act', { exact: true }).selectOption('export');
      await page.getByRole('button', { name: 'Show' }).click();
      const row = page.locator('#audit-table tbody tr[data-act="export"]').filter({ hasText: `secret:${server.project.id}` }).first();
      await row.waitFor({ timeout: 15000 });
      assert.match(await row.textContent(), /\/api\/2\.0\/export/);
      // Its opening record says what it asked, masked by the server.
      const asked = page.locator('#audit-table tbody tr[data-act="export.start"]').filter({ hasText: `secret:${server.project.id}` }).first();
      assert.match(await asked.locator('td.params').textContent(), /"from_date":"\d{4}-\d{2}-\d{2}"/);
      await page.getByText('Chain verified').waitFor({ timeout: 15000 });
      // The export key's alert, its key suspended; the admin enables it here.
      const alertRow = page.locator('#alerts-table tbody tr[data-rule="window_rows"]').filter({ hasText: exportKey.id });
      await alertRow.waitFor({ timeout: 15000 });
      assert.match(await alertRow.textContent(), /Rows in the window.*\d+ rows in 24 h, over 5.*Yes, by this alert.*suspended/);
      await save('audit');
      await alertRow.getByRole('button', { name: `Enable key ${exportKey.id}` }).click();
      await page.getByText(`Key ${exportKey.id} enabled.`).waitFor({ timeout: 15000 });
      assert.match(await alertRow.locator('td.key-state').textContent(), /^active$/);
      const again = await server.request({
        path: `/api/2.0/export?from_date=${isoDate(-3)}&to_date=${isoDate(1)}`, headers: server.authHeader(exportKey.secret),
      });
      assert.equal(again.status, 200, 'the enabled key exports again');

      // Save an insight, pinned; reopen it from the dashboard.
      const state = { events: ['Signed Up'], range: { preset: 'custom', from: isoDate(-3), to: isoDate(1) }, unit: 'day' };
      await page.goto(`${origin}/#/insights?${new URLSearchParams({ s: JSON.stringify(state) })}`);
      await page.locator('#insights-table tbody tr').first().waitFor({ timeout: 15000 });
      await page.getByLabel('Report name', { exact: true }).fill('Sign-ups per day');
      await page.getByRole('button', { name: 'Save report' }).click();
      await page.getByText('Saved “Sign-ups per day” and pinned to the dashboard.').waitFor({ timeout: 15000 });
      await page.getByRole('link', { name: 'Dashboard' }).click();
      const card = page.getByRole('article', { name: 'Sign-ups per day' });
      await card.locator('#insights-table tbody tr').first().waitFor({ timeout: 15000 });
      assert.equal(await card.locator('#insights-table tbody tr th').first().textContent() !== '', true);
      const total = await card.locator('#insights-table tbody tr td').first().getAttribute('data-value')
        ?? await card.locator('#insights-table tbody tr td').first().textContent();
      assert.equal(total, '12');
      await save('dashboard');
      await card.getByRole('link', { name: 'Sign-ups per day' }).click();
      await page.getByRole('heading', { name: 'Insights' }).waitFor({ timeout: 15000 });
      await page.locator('#insights-table tbody tr').first().waitFor({ timeout: 15000 });
      await page.getByRole('link', { name: 'Reports' }).click();
      await page.getByRole('button', { name: 'Unpin Sign-ups per day' }).waitFor({ timeout: 15000 });
      await save('reports');

      // Phone width: no sideways scrolling on the new views.
      await page.setViewportSize({ width: 390, height: 844 });
      for (const view of ['live', 'audit', 'dashboard', 'reports', 'privacy', 'datamap']) {
        await page.goto(`${origin}/#/${view}`);
        await page.locator('main > h1').waitFor();
        await sleep(500);
        const wide = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
        assert.ok(wide <= 1, `${view}: ${wide} px of sideways scrolling at 390 px`);
      }
      assert.deepEqual(problems, []);
      assert.deepEqual(await page.evaluate(() => window.__cspViolations), []);
      assert.deepEqual(requests.filter((url) => !url.startsWith(origin)), [], 'no request to another origin');
    } finally {
      await context.close();
    }
  });
});
