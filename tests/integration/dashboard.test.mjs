// The dashboard (web/, embedded into the binary) in real headless Chromium
// against the real server loaded with generated events: sign in with the
// project secret (a wrong key shows the API's refusal); an insight, a funnel
// and a retention triangle whose tables show exactly what POST /api/query
// answers for the same query; a shared link that restores the view in a new
// browser (after signing in there: the key is never in the link); the
// static files' headers (CSP, ETag, nosniff) and no path outside the
// embedded files; no request to another origin and no CSP violation; every
// control with an accessible name; a phone-width page without sideways
// scrolling.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { clearOfMidnight, hex32, runCli, startServer } from './harness.mjs';
import { closeAll, launchChromium, queryApi } from './browser.mjs';

const DAY_MS = 86400000;
// Four whole UTC days ending yesterday: the events lie in them, whatever
// the time the test runs.
const TODAY_MS = Math.floor(Date.now() / DAY_MS) * DAY_MS;
const BASE_MS = TODAY_MS - 4 * DAY_MS;
const at = (day, hour) => BASE_MS + day * DAY_MS + hour * 3600000;
const date = (ms) => new Date(ms).toISOString().slice(0, 10);
const FROM = date(BASE_MS);
const TO = date(TODAY_MS);

// Generated users: user-N signs up on day N % 3 with plan pro or free;
// two in three activate a day later; every third of those purchases.
function events() {
  const list = [];
  const event = (name, user, timeMs, properties = {}) => list.push({
    event: name, properties: { distinct_id: user, time: timeMs, $insert_id: hex32(), ...properties },
  });
  for (let user = 0; user < 30; user += 1) {
    const id = `gen-user-${user}`;
    const day = user % 3;
    event('Signed Up', id, at(day, 9 + (user % 5)), { plan: user % 2 === 0 ? 'pro' : 'free' });
    if (user % 3 !== 2) {
      event('Activated', id, at(day + 1, 10));
      if (user % 3 === 0) {
        event('Purchased', id, at(day + 1, 12), { price: 10 + user });
      }
    }
  }
  return list;
}

// What a table shows: per body row, its header and the data-value of each
// cell (the exact number behind the formatted text).
async function tableRows(page, selector) {
  await page.waitForSelector(`${selector} tbody tr`, { timeout: 15000 });
  return page.$$eval(`${selector} tbody tr`, (rows) => rows.map((row) => ({
    label: row.querySelector('th').textContent,
    values: [...row.querySelectorAll('td')].map((cell) => cell.dataset.value ?? cell.textContent),
  })));
}

async function signIn(page, key) {
  await page.getByLabel('Project key', { exact: true }).fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

describe('the dashboard in Chromium', () => {
  let server;
  let browser;
  let origin;

  before(async () => {
    server = await startServer({ projectName: 'dashboard-it' });
    const res = await server.importJson(events());
    assert.equal(res.status, 200, res.text);
    origin = `http://${server.host}`;
    browser = await launchChromium();
  });
  after(async () => {
    await closeAll(() => browser && browser.close(), () => server && server.stop());
  });

  // A fresh browser context whose page records every request, console
  // error and CSP violation.
  async function open(url) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const seen = { requests: [], problems: [] };
    page.on('request', (request) => seen.requests.push(request.url()));
    page.on('console', (message) => {
      if (message.type() === 'error') seen.problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => seen.problems.push(`page: ${error.message}`));
    await page.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (event) => {
        window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
      });
    });
    const response = await page.goto(url, { waitUntil: 'load' });
    return { context, page, seen, response };
  }

  it('serves its files with CSP, ETag and nosniff, and nothing outside them', async () => {
    const index = await server.request({ path: '/' });
    assert.equal(index.status, 200);
    assert.match(index.headers['content-type'], /^text\/html/);
    const csp = index.headers['content-security-policy'];
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /connect-src 'self'/);
    assert.doesNotMatch(csp, /https?:|\*|unsafe/, 'no other origin, wildcard or unsafe source');
    assert.equal(index.headers['x-content-type-options'], 'nosniff');
    const script = await server.request({ path: '/assets/app.js' });
    assert.equal(script.status, 200);
    assert.match(script.headers['content-type'], /^text\/javascript/);
    const again = await server.request({ path: '/assets/app.js', headers: { 'If-None-Match': script.headers.etag } });
    assert.equal(again.status, 304);
    for (const target of ['/assets/../../../../etc/passwd', '/assets/%2e%2e/%2e%2e/etc/passwd', '/assets/..%2f..%2fetc%2fpasswd',
      '/assets//app.js', '/assets/app.js%00', '/index.html/..']) {
      const res = await server.request({ path: target });
      assert.equal(res.status, 404, `${target}: ${res.status}`);
      assert.doesNotMatch(res.text, /root:|function/, target);
    }
    // The API sends no credentialed CORS to another origin.
    const query = await server.request({
      method: 'OPTIONS', path: '/api/query', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(query.headers['access-control-allow-origin'], undefined);
    assert.equal(query.headers['access-control-allow-credentials'], undefined);
  });

  it('signs in, shows an insight, a funnel and retention as the API answers them, and restores a shared link', async () => {
    const { context, page, seen, response } = await open(`${origin}/`);
    let sharedLink;
    let segmentation;
    try {
      assert.match(response.headers()['content-security-policy'], /default-src 'none'/);

      // A wrong key: the API's refusal, shown.
      await signIn(page, 'not-the-secret');
      await page.getByRole('alert').waitFor({ timeout: 10000 });
      assert.match(await page.getByRole('alert').textContent(), /refused \(401\)/);
      await signIn(page, server.project.secret);
      await page.getByRole('heading', { name: 'Insights' }).waitFor({ timeout: 10000 });
      assert.match(await page.locator('#project').textContent(), /dashboard-it/);

      // Insights: unique users who signed up, per day, by plan.
      await page.getByLabel('Event 1', { exact: true }).fill('Signed Up');
      await page.getByLabel('Measure', { exact: true }).selectOption('unique');
      await page.getByLabel('Time range', { exact: true }).selectOption('custom');
      await page.getByLabel('From', { exact: true }).fill(FROM);
      await page.getByLabel('Until (not included)', { exact: true }).fill(TO);
      await page.getByLabel('Breakdown', { exact: true }).fill('plan');
      await page.getByRole('button', { name: 'Run' }).click();
      const insight = await tableRows(page, '#insights-table');
      segmentation = await queryApi(server, {
        kind: 'segmentation', from: FROM, to: TO, unit: 'day', events: ['Signed Up'], measure: 'unique',
        breakdown: { properties: ['plan'], limit: 10 },
      });
      assert.deepEqual(insight, segmentation.series.map((series) => ({
        label: `Signed Up · ${series.breakdown[0]}`, values: [series.total, ...series.values].map(String),
      })));
      assert.equal(segmentation.series.reduce((sum, series) => sum + series.total, 0), 30);
      // How long the query and the drawing took, under the chart and as
      // performance measures (web/bench/breakdown.mjs reads them).
      await page.locator('#insights-timing').filter({ hasText: /^Query \d+ ms · drawn in \d+ ms$/ }).waitFor({ timeout: 10000 });
      const measures = await page.evaluate(() => ['query', 'render'].map((name) => performance.getEntriesByName(`minpanel:insights:${name}`).length));
      assert.deepEqual(measures, [1, 1]);
      await page.locator('figure.chart canvas').first().waitFor();
      // Compare with the previous period: the API's "previous" answer, in
      // its own column (the two days before FROM hold no sign-up).
      await page.getByLabel('Compare with the previous period', { exact: true }).check();
      await page.getByRole('button', { name: 'Run' }).click();
      await page.locator('#insights-table thead th').filter({ hasText: 'Previous period' }).waitFor({ timeout: 15000 });
      const compared = await queryApi(server, {
        kind: 'segmentation', from: FROM, to: TO, unit: 'day', events: ['Signed Up'], measure: 'unique',
        breakdown: { properties: ['plan'], limit: 10 }, compare: 'previous_period',
      });
      assert.deepEqual((await tableRows(page, '#insights-table')).map((row) => row.values.slice(0, 2)),
        compared.series.map((series) => [String(series.total),
          String(compared.previous.series.find((before) => before.breakdown[0] === series.breakdown[0])?.total ?? 'null')]));
      await page.getByLabel('Compare with the previous period', { exact: true }).uncheck();
      await page.getByRole('button', { name: 'Run' }).click();
      await page.locator('#insights-table thead th').filter({ hasText: 'Previous period' }).waitFor({ state: 'detached', timeout: 15000 });
      sharedLink = page.url();
      assert.match(sharedLink, /#\/insights\?s=/);
      assert.ok(!sharedLink.includes(server.project.secret), 'the key is never in the URL');

      // Funnels.
      await page.getByRole('link', { name: 'Funnels' }).click();
      await page.getByRole('heading', { name: 'Funnels' }).waitFor();
      await page.getByLabel('Step 1', { exact: true }).fill('Signed Up');
      await page.getByLabel('Step 2', { exact: true }).fill('Activated');
      await page.getByRole('button', { name: 'Add step' }).click();
      await page.getByLabel('Step 3', { exact: true }).fill('Purchased');
      await page.getByLabel('Time range', { exact: true }).selectOption('custom');
      await page.getByLabel('From', { exact: true }).fill(FROM);
      await page.getByLabel('Until (not included)', { exact: true }).fill(TO);
      await page.getByRole('button', { name: 'Run' }).click();
      const funnelRows = await tableRows(page, '#funnel-table');
      const funnel = await queryApi(server, {
        kind: 'funnel', from: FROM, to: TO, steps: ['Signed Up', 'Activated', 'Purchased'], window: { value: 7, unit: 'day' }, order: 'loose',
      });
      assert.deepEqual(funnelRows.map((row) => [row.label, ...row.values.slice(0, 3)]), funnel.steps.map((step, index) => [
        `${index + 1}. ${step.event}`, String(step.subjects), String(step.step_conversion), String(step.overall_conversion),
      ]));
      assert.deepEqual(funnel.steps.map((step) => step.subjects), [30, 20, 10]);
      // Time to convert: the table holds the API's histogram of each later
      // step, bucket by bucket. Activated comes 21-25 h after the sign-up
      // (12 users under a day, 8 from one day on), Purchased 2 h after it.
      const times = await tableRows(page, '#funnel-time-table');
      assert.equal(times.length, funnel.time_to_convert_buckets_ms.length);
      assert.deepEqual(times.map((row) => row.values), funnel.time_to_convert_buckets_ms.map((_, bucket) =>
        funnel.steps.slice(1).map((step) => String(step.time_to_convert[bucket]))));
      assert.deepEqual(funnel.time_to_convert_buckets_ms,
        [0, 10000, 60000, 300000, 900000, 3600000, 14400000, 86400000, 259200000, 604800000]);
      assert.deepEqual(funnel.steps[1].time_to_convert, [0, 0, 0, 0, 0, 0, 12, 8, 0, 0]);
      assert.deepEqual(funnel.steps[2].time_to_convert, [0, 0, 0, 0, 0, 10, 0, 0, 0, 0]);
      assert.deepEqual(times.slice(5, 8).map((row) => row.label), ['1 h to 4 h', '4 h to 1 d', '1 d to 3 d']);
      assert.equal(times[9].label, '7 d or more');
      // Its chart: the last step first, then the step the select picks.
      const timeChart = page.locator('#funnel-time-chart');
      await timeChart.locator('canvas').waitFor();
      assert.match(await timeChart.getAttribute('aria-label'), /to 3\. Purchased/);
      await page.getByLabel('Time to convert to', { exact: true }).selectOption('1');
      assert.match(await timeChart.getAttribute('aria-label'), /to 2\. Activated/);
      assert.equal(await timeChart.locator('canvas').count(), 1);

      // Retention. The last cohort's period 3 is tomorrow, not begun (null);
      // midnight between the dashboard's query and the API's would begin it
      // for the second only.
      await clearOfMidnight();
      await page.getByRole('link', { name: 'Retention' }).click();
      await page.getByRole('heading', { name: 'Retention' }).waitFor();
      await page.getByLabel('First event (cohort)', { exact: true }).fill('Signed Up');
      await page.getByLabel('Return event', { exact: true }).fill('Activated');
      await page.getByLabel('Periods', { exact: true }).fill('3');
      await page.getByLabel('Time range', { exact: true }).selectOption('custom');
      await page.getByLabel('From', { exact: true }).fill(FROM);
      await page.getByLabel('Until (not included)', { exact: true }).fill(TO);
      await page.getByRole('button', { name: 'Run' }).click();
      const triangle = await tableRows(page, '#retention-table');
      const retention = await queryApi(server, {
        kind: 'retention', from: FROM, to: TO, birth: 'Signed Up', return: 'Activated', unit: 'day', periods: 3, mode: 'on',
      });
      const cells = (counts) => counts.map((count) => (count === null ? 'null' : String(count)));
      assert.deepEqual(triangle, [
        { label: 'Total', values: [String(retention.size), ...cells(retention.total.counts)] },
        ...retention.cohorts.map((cohort) => ({ label: cohort.start, values: [String(cohort.size), ...cells(cohort.counts)] })),
      ]);
      assert.equal(retention.size, 30);
      await page.locator('figure.chart canvas').first().waitFor();

      // Every control has an accessible name.
      const unnamed = await page.evaluate(() => {
        const nameOf = (element) => (element.getAttribute('aria-label')
          || (element.getAttribute('aria-labelledby') || '').split(' ').map((id) => document.getElementById(id)?.textContent ?? '').join(' ')
          || [...(element.labels ?? [])].map((label) => label.textContent).join(' ')
          || (['BUTTON', 'A'].includes(element.tagName) ? element.textContent : '')
          || element.getAttribute('title') || '').trim();
        return [...document.querySelectorAll('input, select, textarea, button, a[href], [tabindex]:not([tabindex="-1"])')]
          .filter((element) => element.offsetParent !== null || element.getClientRects().length > 0)
          .filter((element) => nameOf(element) === '')
          .map((element) => element.outerHTML.slice(0, 120));
      });
      assert.deepEqual(unnamed, []);

      // Nothing but this origin, and no CSP violation.
      const foreign = seen.requests.filter((url) => !url.startsWith(`${origin}/`) && !url.startsWith('data:'));
      assert.deepEqual(foreign, []);
      assert.deepEqual(await page.evaluate(() => window.__cspViolations), []);
      assert.deepEqual(seen.problems.filter((text) => !/401/.test(text)), []);
    } finally {
      await context.close();
    }

    // The shared link in another browser: sign in there, then the same view.
    // By keyboard alone: the key field has the focus, Enter signs in.
    const { context: other, page: shared } = await open(sharedLink);
    try {
      await shared.getByLabel('Project key', { exact: true }).waitFor();
      await shared.keyboard.type(server.project.secret);
      await shared.keyboard.press('Enter');
      const restored = await tableRows(shared, '#insights-table');
      assert.equal(restored.length, segmentation.series.length);
      assert.equal(await shared.getByLabel('Event 1', { exact: true }).inputValue(), 'Signed Up');
      assert.equal(await shared.getByLabel('Breakdown', { exact: true }).inputValue(), 'plan');
      assert.equal(await shared.getByLabel('Measure', { exact: true }).inputValue(), 'unique');

      // At phone width the page does not scroll sideways (tables scroll in
      // their own box).
      await shared.setViewportSize({ width: 390, height: 844 });
      await shared.waitForTimeout(200);
      const overflow = await shared.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);

      // An API error says what went wrong.
      await shared.getByLabel('Measure', { exact: true }).selectOption('sum');
      await shared.getByLabel('Of property', { exact: true }).fill('');
      await shared.getByLabel('Of property', { exact: true }).press('Enter');
      await shared.getByRole('alert').waitFor({ timeout: 10000 });
      assert.match(await shared.getByRole('alert').textContent(), /The server answered 400: measure/);
    } finally {
      await other.close();
    }
  });

  // Access keys (docs/security.md): a project's query key, and a server-wide
  // key that also needs the project id. Skipped by a binary without the
  // `keys` command.
  it('signs in with an access key of either kind', async (t) => {
    const help = await runCli(['keys', '--help']).catch(() => null);
    if (!help) {
      t.skip('this minpanel has no `keys` command');
      return;
    }
    // The secret, mpk_<id>_<secret>, is printed once.
    const create = async (args) => {
      const { stdout } = await runCli(['keys', 'create', '--data', server.dataDir, '--keys', server.keysDir, ...args]);
      const secret = /mpk_[0-9a-f]+_[0-9a-f]{32,}/.exec(stdout);
      assert.ok(secret, `keys create printed no secret: ${stdout}`);
      return secret[0];
    };
    const queryKey = await create(['--name', 'dashboard-query', '--project', 'dashboard-it', '--scope', 'query:aggregate']);
    const adminKey = await create(['--name', 'dashboard-ops', '--admin']);
    await server.reload();
    const attempt = async (key, projectId) => {
      const { context, page } = await open(`${origin}/`);
      try {
        await page.getByLabel('Project key', { exact: true }).fill(key);
        await page.getByLabel('Project id (server-wide keys only)', { exact: true }).fill(projectId);
        await page.getByRole('button', { name: 'Sign in' }).click();
        const outcome = await Promise.race([
          page.getByRole('heading', { name: 'Insights' }).waitFor({ timeout: 10000 }).then(() => 'signed in'),
          page.getByRole('alert').waitFor({ timeout: 10000 }).then(() => page.getByRole('alert').textContent()),
        ]);
        if (outcome !== 'signed in') return outcome;
        await page.getByLabel('Event 1', { exact: true }).fill('Signed Up');
        await page.getByLabel('Time range', { exact: true }).selectOption('custom');
        await page.getByLabel('From', { exact: true }).fill(FROM);
        await page.getByLabel('Until (not included)', { exact: true }).fill(TO);
        await page.getByRole('button', { name: 'Run' }).click();
        const rows = await tableRows(page, '#insights-table');
        return rows[0].values[0];
      } finally {
        await context.close();
      }
    };
    assert.equal(await attempt(queryKey, ''), '30');
    assert.equal(await attempt(adminKey, String(server.project.id)), '30');
    // Without the id, the server-wide key takes the one project it reaches
    // (GET /api/projects); with several it gets the picker (dashboard_views.test.mjs).
    assert.equal(await attempt(adminKey, ''), '30');
  });
});
