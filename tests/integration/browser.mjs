// Browser harness for the end-to-end tests: the real browser SDKs
// (mixpanel-browser, posthog-js, plausible-tracker from tests/npm) run in real
// headless Chromium (Debian's `chromium`, driven by playwright-core), in a
// test page served by the test itself on another origin than minpanel, so
// CORS, credentials and preflights are the browser's own. Nothing is mocked.
//
//   const browser = await launchChromium();          // once per test file
//   const pages = await startPageServer();           // the site: http://app.example.test:<port>/
//   const front = await startFrontProxy(server);     // optional: a reverse proxy in front of minpanel
//   const { page, watch } = await openPage(browser, pages.url('/shop/checkout.html?utm_source=mail'));
//   await loadSdk(page, 'mixpanel-browser');        // window.mixpanel, from node_modules
//   ... page.evaluate(...) drives the SDK; watch records console errors and failed requests
//   const rows = await waitForRows(server, (row) => row.properties.run_id === run, 3);
//
// The page's host name (PAGE_HOST) is mapped to 127.0.0.1 inside Chromium
// only (--host-resolver-rules), so stored page URLs look like a real site's
// and the tests never depend on /etc/hosts. minpanel stays at 127.0.0.1.

import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';

import { NPM_DIR, sleep } from './harness.mjs';

// Debian's chromium package (scripts/setup.sh installs it); playwright-core
// never downloads a browser of its own.
export const CHROMIUM_PATH = process.env.MINPANEL_CHROMIUM || '/usr/bin/chromium';

// The test site's host name, resolved to 127.0.0.1 by Chromium alone.
export const PAGE_HOST = 'app.example.test';

const NODE_MODULES = path.join(NPM_DIR, 'node_modules');

// Each SDK's browser build as its package ships it, and the global it
// defines. `module` builds are ES modules: loaded with <script type=module>
// and their default export put on `global`.
export const SDK_BUNDLES = {
  'mixpanel-browser': { file: 'dist/mixpanel.umd.js', global: 'mixpanel' },
  'posthog-js': { file: 'dist/array.full.js', global: 'posthog' },
  'plausible-tracker': { file: 'build/module/index.js', global: 'Plausible', module: true },
};

function requireNpm(name) {
  const require = createRequire(path.join(NPM_DIR, 'package.json'));
  try {
    return require(name);
  } catch (error) {
    throw new Error(`the ${name} npm package is missing: run \`npm ci --prefix tests/npm\` (${error.message})`);
  }
}

// Starts headless Chromium. Call once per test file (`before`) and close it
// in `after`; each test opens its own context (fresh cookies and storage).
export async function launchChromium({ args = [] } = {}) {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    throw new Error(`chromium not found at ${CHROMIUM_PATH}: run scripts/setup.sh (or set MINPANEL_CHROMIUM)`);
  }
  const { chromium } = requireNpm('playwright-core');
  return chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [`--host-resolver-rules=MAP ${PAGE_HOST} 127.0.0.1`, ...args],
  });
}

const DEFAULT_PAGE = '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>minpanel browser test</title>' +
  '<link rel="icon" href="data:,"></head><body><h1>minpanel browser test</h1><p>A page of a generated test site.</p></body></html>\n';

// The test site: serves any *.html path as a blank page (or the HTML given to
// `setPage`), and the SDK files under /node_modules/<package>/<file> from
// tests/npm (an extensionless import resolves to its .js file, as a bundler
// would). Every request is recorded in `requests`.
export async function startPageServer({ host = PAGE_HOST } = {}) {
  const pages = new Map();
  const requests = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://page.invalid');
    requests.push({ method: req.method, path: url.pathname, headers: req.headers });
    const send = (status, type, body) => {
      res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
      res.end(body);
    };
    if (url.pathname.startsWith('/node_modules/')) {
      const file = path.resolve(NODE_MODULES, decodeURIComponent(url.pathname.slice('/node_modules/'.length)));
      if (!file.startsWith(NODE_MODULES + path.sep)) {
        send(403, 'text/plain', 'outside node_modules\n');
        return;
      }
      const candidates = [file, `${file}.js`];
      const found = candidates.find((candidate) => fs.existsSync(candidate) && fs.statSync(candidate).isFile());
      if (!found) {
        send(404, 'text/plain', 'not found\n');
        return;
      }
      send(200, 'text/javascript; charset=utf-8', fs.readFileSync(found));
      return;
    }
    if (pages.has(url.pathname)) {
      send(200, 'text/html; charset=utf-8', pages.get(url.pathname));
      return;
    }
    if (url.pathname.endsWith('.html') || url.pathname === '/') {
      send(200, 'text/html; charset=utf-8', DEFAULT_PAGE);
      return;
    }
    send(404, 'text/plain', 'not found\n');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  const origin = `http://${host}:${port}`;
  return {
    host,
    port,
    origin,
    requests,
    url: (pathAndQuery = '/') => `${origin}${pathAndQuery}`,
    setPage: (pagePath, html) => pages.set(pagePath, html),
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

// A reverse proxy in front of minpanel, as a first-party deployment has one:
// it forwards every request as it came, adds `X-Forwarded-For: forwardedFor`
// (start minpanel with `trusted_proxies = ["127.0.0.1"]` for it to be
// believed), and records each request as {method, path, query, headers, body,
// status, injected}. `inject({mode, match, slowMs})` makes the next request
// that `match(request)` accepts misbehave once: 'unavailable' answers 503
// (with the CORS headers minpanel would send, so the SDK sees the status)
// without forwarding; 'slow' forwards it (so minpanel stores it) and answers
// only after `slowMs`, past the client's timeout.
export async function startFrontProxy(target, { forwardedFor } = {}) {
  const proxy = { requests: [], injections: [], server: null, port: 0, origin: '' };
  proxy.inject = ({ mode, match = () => true, slowMs = 2000 }) => {
    if (mode !== 'unavailable' && mode !== 'slow') {
      throw new Error(`inject: mode is 'unavailable' or 'slow', not ${mode}`);
    }
    proxy.injections.push({ mode, match, slowMs });
  };
  proxy.server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      const url = new URL(req.url, 'http://proxy.invalid');
      const record = {
        method: req.method, path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers,
        body: Buffer.concat(chunks), status: null, injected: null, at: Date.now(),
      };
      proxy.requests.push(record);
      const injectionIdx = req.method === 'OPTIONS' ? -1 : proxy.injections.findIndex((item) => item.match(record));
      const injection = injectionIdx === -1 ? null : proxy.injections.splice(injectionIdx, 1)[0];
      record.injected = injection ? injection.mode : null;
      if (injection && injection.mode === 'unavailable') {
        const headers = { 'Content-Type': 'application/json', 'Retry-After': '1' };
        if (req.headers.origin) {
          headers['Access-Control-Allow-Origin'] = req.headers.origin;
          headers['Access-Control-Allow-Credentials'] = 'true';
          headers.Vary = 'Origin';
        }
        record.status = 503;
        res.writeHead(503, headers);
        res.end('{"error":"injected by the test proxy"}');
        return;
      }
      const headers = { ...req.headers };
      if (forwardedFor) {
        headers['x-forwarded-for'] = forwardedFor;
      }
      const upstream = http.request({
        host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers, agent: false,
      }, (upstreamRes) => {
        const body = [];
        upstreamRes.on('data', (chunk) => body.push(chunk));
        upstreamRes.on('end', () => {
          record.status = upstreamRes.statusCode;
          record.responseText = Buffer.concat(body).toString('utf8');
          const answer = () => {
            if (!res.destroyed) {
              res.writeHead(upstreamRes.statusCode, upstreamRes.headers);
              res.end(Buffer.concat(body));
            }
          };
          if (injection && injection.mode === 'slow') {
            setTimeout(answer, injection.slowMs);
          } else {
            answer();
          }
        });
      });
      upstream.on('error', () => res.destroy());
      upstream.end(record.body);
    });
  });
  proxy.server.listen(0, '127.0.0.1');
  await once(proxy.server, 'listening');
  proxy.port = proxy.server.address().port;
  proxy.origin = `http://127.0.0.1:${proxy.port}`;
  proxy.close = () => new Promise((resolve) => {
    proxy.server.closeAllConnections();
    proxy.server.close(() => resolve());
  });
  return proxy;
}

// Records what a page does that a test asserts on: console errors, uncaught
// page errors, failed requests (network errors, CORS refusals, aborts), and
// every request ({method, url, resourceType}; a beacon sent while the page
// unloads may not be reported) and
// every response with its status. `inFlight` counts requests not yet
// finished.
export function watchPage(page) {
  const watch = {
    consoleErrors: [], pageErrors: [], failedRequests: [], requests: [], responses: [], inFlight: 0, lastActivityMs: Date.now(),
  };
  const touch = () => {
    watch.lastActivityMs = Date.now();
  };
  page.on('console', (message) => {
    if (message.type() === 'error') {
      watch.consoleErrors.push(message.text());
    }
  });
  page.on('pageerror', (error) => watch.pageErrors.push(String(error && error.stack || error)));
  page.on('request', (request) => {
    watch.requests.push({ method: request.method(), url: request.url(), resourceType: request.resourceType() });
    watch.inFlight += 1;
    touch();
  });
  page.on('requestfailed', (request) => {
    watch.inFlight -= 1;
    touch();
    watch.failedRequests.push(`${request.method()} ${request.url()}: ${request.failure() ? request.failure().errorText : 'failed'}`);
  });
  page.on('requestfinished', () => {
    watch.inFlight -= 1;
    touch();
  });
  page.on('response', (response) => {
    const request = response.request();
    watch.responses.push({ method: request.method(), url: response.url(), status: response.status(), request });
  });
  // Everything that went wrong, one line each; [] for a clean page.
  watch.problems = () => [
    ...watch.consoleErrors.map((text) => `console error: ${text}`),
    ...watch.pageErrors.map((text) => `page error: ${text}`),
    ...watch.failedRequests.map((text) => `request failed: ${text}`),
  ];
  return watch;
}

// Opens `url` in a fresh browser context (its own cookies and storage) and
// returns {context, page, watch}; the watch is attached before navigation.
export async function openPage(browser, url, { referer } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const watch = watchPage(page);
  const response = await page.goto(url, { waitUntil: 'load', referer });
  if (!response || response.status() !== 200) {
    await context.close();
    throw new Error(`the test page ${url} answered ${response ? response.status() : 'nothing'}`);
  }
  return { context, page, watch };
}

// Loads an SDK's bundle from the test site into the page (a real <script>
// from node_modules, no CDN) and waits for its global.
export async function loadSdk(page, name) {
  const bundle = SDK_BUNDLES[name];
  if (!bundle) {
    throw new Error(`loadSdk: unknown SDK ${name}; known: ${Object.keys(SDK_BUNDLES).join(', ')}`);
  }
  const src = `/node_modules/${name}/${bundle.file}`;
  if (bundle.module) {
    await page.addScriptTag({
      type: 'module', content: `import sdk from ${JSON.stringify(src)};\nwindow[${JSON.stringify(bundle.global)}] = sdk;\n`,
    });
  } else {
    await page.addScriptTag({ url: src });
  }
  await page.waitForFunction((global) => window[global] !== undefined, bundle.global, { timeout: 10000 });
}

// Waits until no request of the page has been in flight for `quietMs`.
export async function waitForNetworkIdle(watch, { quietMs = 500, timeoutMs = 20000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (watch.inFlight <= 0 && Date.now() - watch.lastActivityMs >= quietMs) {
      return;
    }
    await sleep(50);
  }
  throw new Error(`the page still had ${watch.inFlight} request(s) in flight after ${timeoutMs} ms`);
}

// Polls the export API until at least `count` rows satisfy `predicate`, then
// returns those rows (all of them, so that a duplicate shows as more than
// `count`). Throws with what it found after `timeoutMs`.
export async function waitForRows(server, predicate, count, { timeoutMs = 20000, fromDate } = {}) {
  const deadline = Date.now() + timeoutMs;
  let rows = [];
  for (;;) {
    rows = (await server.exportEvents(fromDate ? { fromDate } : {})).filter(predicate);
    if (rows.length >= count || Date.now() >= deadline) {
      break;
    }
    await sleep(200);
  }
  if (rows.length < count) {
    throw new Error(`waited ${timeoutMs} ms for ${count} exported rows, found ${rows.length}: ` +
      JSON.stringify(rows.map((row) => row.event)));
  }
  return rows;
}

// POST /api/query with the project secret; resolves with the parsed answer.
export async function queryApi(server, query) {
  const res = await server.request({
    method: 'POST', path: '/api/query', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
    body: JSON.stringify(query),
  });
  if (res.status !== 200) {
    throw new Error(`/api/query answered ${res.status}: ${res.text.slice(0, 500)}`);
  }
  return JSON.parse(res.text);
}

// How many events named `event` (and, given, how many distinct subjects)
// the query API counts in the last day (and the next hour).
export async function countEvents(server, event, { filters = [] } = {}) {
  const range = { from: Date.now() - 86400000, to: Date.now() + 3600000 };
  const selector = { event, filters };
  const total = await queryApi(server, { kind: 'segmentation', ...range, events: [selector], measure: 'total' });
  const unique = await queryApi(server, { kind: 'segmentation', ...range, events: [selector], measure: 'unique' });
  return { total: total.series[0].total, unique: unique.series[0].total };
}

// How many persons the query API counts at each step of a funnel over the
// last day, and how many distinct persons did any event whose `property`
// is `value` (docs/identity.md: merged ids are one person).
export async function personsAcross(server, steps, { property, value }) {
  const range = { from: Date.now() - 86400000, to: Date.now() + 3600000 };
  const funnel = await queryApi(server, { kind: 'funnel', ...range, steps });
  const unique = await queryApi(server, {
    kind: 'segmentation', ...range, measure: 'unique',
    events: [{ any_event: true, filters: [{ property, op: 'eq', value }] }],
  });
  return { funnel: funnel.steps.map((step) => step.subjects), unique: unique.series[0].total };
}

// Runs each closer in turn (browser.close, pages.close, ...), even when one
// fails: for `after` hooks.
export async function closeAll(...closers) {
  for (const closer of closers) {
    if (closer) {
      try {
        await closer();
      } catch {
        // Closing is best effort: the next closer still runs.
      }
    }
  }
}
