// How interactive the Insights chart is over a large data folder (issue 9:
// "a changed breakdown re-rendered in under 500 ms plus the query time"),
// in real Chromium against the real server: the dashboard is opened on an
// insight broken down by one property, then the breakdown is changed (the
// input filled, the form submitted, as a person does) to each of the others
// in turn, `--runs` times. Each change is timed by the dashboard itself
// (web/src/views/insights.ts): `query` from the submit to the answer parsed
// (the request, the server's work, the JSON), `render` from there to the
// chart and table built and the next frame painted; `total` is the page's
// own clock from the submit to that frame. Also the first load (fresh
// context, `load` event) and the time to the first chart after sign-in.
//
// The data folder is made by bench/query.sh's generator and `minpanel
// import` (docs/benchmarks.md, "Dashboard"):
//   MINPANEL_BIN=build/apps/minpanel/minpanel node web/bench/breakdown.mjs \
//     --data var/bench-dashboard/data --keys var/bench-dashboard/keys \
//     --secret SECRET [--event NAME (default *: any event)] [--from 2026-10-01 --to 2026-10-31] \
//     [--breakdowns country,browser,platform,plan,os] [--runs 5]
// Prints one JSON line per change and a summary (medians) as JSON.
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

import { REPO_ROOT, sleep } from '../../tests/integration/harness.mjs';
import { launchChromium } from '../../tests/integration/browser.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, value, index, list) => {
  if (value.startsWith('--')) pairs.push([value.slice(2), list[index + 1]]);
  return pairs;
}, []));
for (const required of ['data', 'keys', 'secret']) {
  if (!args[required]) {
    console.error(`breakdown.mjs: --${required} is required (see the header of this file)`);
    process.exit(2);
  }
}
const bin = process.env.MINPANEL_BIN || path.join(REPO_ROOT, 'build/apps/minpanel/minpanel');
const runs = Number(args.runs ?? 5);
const event = args.event ?? '*';  // any event: every one of the folder's events
const from = args.from ?? '2026-10-01';
const to = args.to ?? '2026-10-31';
const breakdowns = (args.breakdowns ?? 'country,browser,platform,plan,os').split(',');

const freePort = () => new Promise((resolve, reject) => {
  const probe = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  }).on('error', reject);
});
const round = (value) => Math.round(value * 10) / 10;
const median = (values) => {
  const sorted = [...values].sort((left, right) => left - right);
  const middle = Math.floor(sorted.length / 2);
  return round(sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2);
};

const port = await freePort();
const origin = `http://127.0.0.1:${port}`;
const server = spawn(bin, ['serve', '--data', args.data, '--keys', args.keys, '--listen', `127.0.0.1:${port}`],
  { stdio: ['ignore', 'ignore', 'inherit'] });
const started = Date.now();
for (;;) {
  if (server.exitCode !== null) throw new Error(`minpanel serve exited with ${server.exitCode}`);
  try {
    if ((await fetch(`${origin}/healthz`)).ok) break;
  } catch {
    // Not listening yet.
  }
  if (Date.now() - started > 600000) throw new Error('minpanel serve did not answer /healthz in 10 minutes');
  await sleep(100);
}
console.error(`breakdown.mjs: the server answers after ${((Date.now() - started) / 1000).toFixed(1)} s`);

const browser = await launchChromium();
const results = [];
try {
  const loads = [];
  for (let run = 0; run < runs; run += 1) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${origin}/`, { waitUntil: 'load' });
    loads.push(await page.evaluate(() => performance.getEntriesByType('navigation')[0].loadEventEnd));
    await context.close();
  }

  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  await page.goto(`${origin}/`);
  await page.getByLabel('Project key', { exact: true }).fill(args.secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Insights' }).waitFor({ timeout: 60000 });
  const state = { events: [event], measure: 'total', range: { preset: 'custom', from, to }, unit: 'day', breakdown: breakdowns[0] };
  const opened = Date.now();
  await page.goto(`${origin}/#/insights?s=${encodeURIComponent(JSON.stringify(state))}`);
  await page.waitForFunction(() => performance.getEntriesByName('minpanel:insights:render').length > 0, null, { timeout: 120000 });
  const firstChartMs = Date.now() - opened;

  // One change: fill the breakdown, submit, wait for the drawn frame.
  const change = (breakdown) => page.evaluate(async (value) => {
    const input = document.querySelector('input[name="breakdown"]');
    input.value = value;
    performance.clearMeasures('minpanel:insights:render');
    const submitted = performance.now();
    input.form.requestSubmit();
    for (;;) {
      const [render] = performance.getEntriesByName('minpanel:insights:render');
      if (render && render.startTime > submitted) {
        const [query] = performance.getEntriesByName('minpanel:insights:query');
        const error = document.querySelector('.status.error');
        return {
          breakdown: value, query_ms: query.duration, render_ms: render.duration,
          total_ms: render.startTime + render.duration - submitted,
          series: document.querySelectorAll('#insights-table tbody tr').length,
          error: error ? error.textContent : null,
        };
      }
      const error = document.querySelector('.status.error');
      if (error) return { breakdown: value, error: error.textContent };
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }, breakdown);

  await change(breakdowns[0]);  // warm: the server's caches and the page's code
  for (let run = 0; run < runs; run += 1) {
    for (const breakdown of [...breakdowns.slice(1), breakdowns[0]]) {
      const result = await change(breakdown);
      if (result.error) throw new Error(`${breakdown}: ${result.error}`);
      console.log(JSON.stringify({ run, ...result, query_ms: round(result.query_ms), render_ms: round(result.render_ms),
        total_ms: round(result.total_ms) }));
      results.push(result);
    }
  }
  const summary = {
    events: event, from, to, runs, changes: results.length,
    first_load_ms: { median: median(loads), max: round(Math.max(...loads)) },
    first_chart_ms: firstChartMs,
    query_ms: median(results.map((result) => result.query_ms)),
    render_ms: median(results.map((result) => result.render_ms)),
    render_max_ms: round(Math.max(...results.map((result) => result.render_ms))),
    total_ms: median(results.map((result) => result.total_ms)),
    per_breakdown: Object.fromEntries(breakdowns.map((breakdown) => {
      const mine = results.filter((result) => result.breakdown === breakdown);
      return [breakdown, { query_ms: median(mine.map((result) => result.query_ms)),
        render_ms: median(mine.map((result) => result.render_ms)), series: mine[0]?.series }];
    })),
  };
  console.log(JSON.stringify(summary, null, 2));
} finally {
  await browser.close();
  server.kill('SIGTERM');
}
