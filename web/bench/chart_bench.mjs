// Measures the chart libraries the dashboard chose between (web/README.md,
// "Charting"): bundle size and the time to render a 10-series × 365-point
// line chart in headless Chromium (Debian's, through tests/npm's
// playwright-core). Not part of the build or the tests; run it by hand:
//
//   dir=$(mktemp -d) && cp web/bench/*.js "$dir" && (cd "$dir" && npm init -y >/dev/null &&
//     npm install echarts@5 uplot@1.6.32 esbuild@0.28.2) && node web/bench/chart_bench.mjs "$dir"
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const dir = process.argv[2];
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const { chromium } = createRequire(path.join(repo, 'tests/npm/package.json'))('playwright-core');
const browser = await chromium.launch({ executablePath: process.env.MINPANEL_CHROMIUM || '/usr/bin/chromium' });
for (const name of ['uplot', 'echarts_min', 'echarts_full']) {
  const out = path.join(dir, 'out', `${name}.js`);
  execFileSync(path.join(dir, 'node_modules/.bin/esbuild'), [path.join(dir, `${name}.js`), '--bundle', '--minify',
    '--format=iife', `--outfile=${out}`, '--log-level=warning']);
  const code = fs.readFileSync(out);
  const times = [];
  const loads = [];
  for (let run = 0; run < 7; run += 1) {
    const page = await browser.newPage();
    await page.setContent('<!doctype html><body></body>');
    const loadStart = Date.now();
    await page.addScriptTag({ content: code.toString('utf8') });
    loads.push(Date.now() - loadStart);
    times.push(await page.evaluate(() => window.run()));
    await page.close();
  }
  const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
  console.log(`${name}: ${code.length} bytes (${zlib.gzipSync(code, { level: 9 }).length} gzip); ` +
    `script load+eval median ${median(loads)} ms; render median ${median(times).toFixed(1)} ms (7 runs)`);
}
await browser.close();
