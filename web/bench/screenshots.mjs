// Screenshots of the dashboard's views for docs/ (docs/dashboard-*.png) and
// the first-load time on loopback: the real server with generated events,
// real Chromium. Run by hand after a build:
//   MINPANEL_BIN=build/apps/minpanel/minpanel node web/bench/screenshots.mjs
import path from 'node:path';
import { hex32, REPO_ROOT, startServer } from '../../tests/integration/harness.mjs';
import { launchChromium } from '../../tests/integration/browser.mjs';

const DAY_MS = 86400000;
const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
const events = [];
const add = (name, user, timeMs, properties = {}) => timeMs < Date.now() && events.push({
  event: name, properties: { distinct_id: user, time: timeMs, $insert_id: hex32(), ...properties },
});
// 600 generated users over 28 days, with a weekly rhythm and decaying returns.
for (let user = 0; user < 600; user += 1) {
  const day = user % 28;
  const born = today - (28 - day) * DAY_MS + (user % 12) * 3600000;
  const platform = ['web', 'ios', 'android'][user % 3];
  add('Signed Up', `gen-${user}`, born, { platform });
  for (let later = 0; later < 28 - day; later += 1) {
    if ((user * 7 + later * 13) % 100 < 60 / (1 + later / 2)) add('Opened App', `gen-${user}`, born + later * DAY_MS + 3600000, { platform });
  }
  if (user % 3 !== 2) add('Created Project', `gen-${user}`, born + 1800000, { platform });
  if (user % 5 === 0) add('Purchased', `gen-${user}`, born + 2 * DAY_MS, { platform, price: 10 + (user % 40) });
}
const server = await startServer({ projectName: 'demo' });
for (let start = 0; start < events.length; start += 1000) {
  const res = await server.importJson(events.slice(start, start + 1000));
  if (res.status !== 200) throw new Error(`import: ${res.status} ${res.text.slice(0, 300)}`);
}
console.log(`${events.length} generated events imported`);
const browser = await launchChromium();
const origin = `http://${server.host}`;

const loads = [];
for (let run = 0; run < 5; run += 1) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${origin}/`, { waitUntil: 'load' });
  loads.push(await page.evaluate(() => {
    const [navigation] = performance.getEntriesByType('navigation');
    return { domContentLoaded: navigation.domContentLoadedEventEnd, load: navigation.loadEventEnd };
  }));
  await context.close();
}
loads.sort((a, b) => a.load - b.load);
console.log(`first load on loopback (fresh context, 5 runs): median load ${loads[2].load.toFixed(0)} ms, ` +
  `DOMContentLoaded ${loads[2].domContentLoaded.toFixed(0)} ms; max load ${loads[4].load.toFixed(0)} ms`);

const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
const page = await context.newPage();
await page.goto(`${origin}/`);
await page.getByLabel('Project key', { exact: true }).fill(server.project.secret);
await page.getByRole('button', { name: 'Sign in' }).click();
await page.getByRole('heading', { name: 'Insights' }).waitFor();
const state = (value) => encodeURIComponent(JSON.stringify(value));
const shots = [
  ['insights', `#/insights?s=${state({ events: ['Opened App', 'Signed Up'], measure: 'unique', range: { preset: '30d', from: '', to: '' }, unit: 'day', breakdown: '', compare: true })}`, '#insights-table'],
  ['funnels', `#/funnels?s=${state({ steps: ['Signed Up', 'Created Project', 'Purchased'], window: 7, windowUnit: 'day', range: { preset: '30d', from: '', to: '' } })}`, '#funnel-table'],
  ['retention', `#/retention?s=${state({ birth: 'Signed Up', returning: 'Opened App', unit: 'day', periods: 10, range: { preset: '30d', from: '', to: '' } })}`, '#retention-table'],
];
for (const [name, hash, table] of shots) {
  await page.goto(`${origin}/${hash}`);
  const started = Date.now();
  await page.waitForSelector(`${table} tbody tr`, { timeout: 10000 }).catch(async (error) => {
    throw new Error(`${name}: ${await page.locator('.status').textContent()} (${error.message})`);
  });
  console.log(`${name}: shown ${Date.now() - started} ms after navigation`);
  await page.waitForTimeout(300);
  await page.screenshot({ path: path.join(REPO_ROOT, 'docs', `dashboard-${name}.png`), fullPage: true });
}
await page.setViewportSize({ width: 390, height: 844 });
await page.goto(`${origin}/${shots[0][1]}`);
await page.waitForSelector('#insights-table tbody tr');
await page.waitForTimeout(300);
await page.screenshot({ path: path.join(REPO_ROOT, 'docs', 'dashboard-insights-phone.png') });
// The funnels' time-to-convert chart at phone width: its axis labels
// spaced so none overlaps, the last ("7 d or more") whole.
await page.goto(`${origin}/${shots[1][1]}`);
await page.waitForSelector('#funnel-time-chart canvas');
await page.waitForTimeout(300);
await page.locator('#funnel-time-chart').screenshot({ path: path.join(REPO_ROOT, 'docs', 'dashboard-funnels-phone.png') });
await browser.close();
await server.stop();
