// plausible-tracker 0.3.9 in real headless Chromium against the real
// minpanel binary: the tracker, loaded from tests/npm into a page served by
// the test on another origin (http://app.example.test:<port>), sends a page
// view and a custom event with props through a reverse proxy that adds
// X-Forwarded-For (minpanel trusts 127.0.0.1). Each event must arrive exactly
// once, from one visitor, with its props as the policy stores them, read back
// through the export and query APIs; the user agent and the address must not
// be in the data folder.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';

import { clearOfMidnight, startServer, runCli, grepTree, PSEUDONYM_RE, sleep } from './harness.mjs';
import {
  launchChromium, startPageServer, startFrontProxy, openPage, loadSdk, waitForNetworkIdle, waitForRows, countEvents,
  closeAll, PAGE_HOST,
} from './browser.mjs';

const CLIENT_IP = '8.8.8.8';

describe('plausible-tracker 0.3.9 in headless Chromium', () => {
  let server;
  let browser;
  let pages;
  let front;

  before(async () => {
    server = await startServer({ projectName: 'plausible-browser', configText: 'trusted_proxies = ["127.0.0.1"]\n' });
    await server.stop('SIGTERM');
    await runCli(['project', 'set-domains', 'plausible-browser', PAGE_HOST, '--data', server.dataDir, '--keys', server.keysDir]);
    await server.start();
    browser = await launchChromium();
    pages = await startPageServer();
    front = await startFrontProxy(server, { forwardedFor: CLIENT_IP });
  });

  after(async () => {
    await closeAll(() => browser && browser.close(), () => pages && pages.close(), () => front && front.close(),
      () => server && server.cleanup());
  });

  it('a page view and a custom event with props arrive exactly once, from one visitor', async () => {
    // One visitor: one salt, that of the server's UTC day, for both events.
    await clearOfMidnight(60000);
    // Short and without long hex runs, so the URL policy keeps it as a path segment.
    const run = `pb${crypto.randomBytes(3).toString('hex')}`;
    const { context, page, watch } = await openPage(browser, pages.url(`/${run}/pricing.html?utm_source=mail&ref=abc`));
    try {
      await loadSdk(page, 'plausible-tracker');
      const userAgent = await page.evaluate(() => navigator.userAgent);
      // The published build calls back with no arguments once the request ends.
      await page.evaluate(({ apiHost, domain, runId }) => new Promise((resolve, reject) => {
        const plausible = window.Plausible({ domain, apiHost });
        const timer = setTimeout(() => reject(new Error('plausible-tracker never called back')), 10000);
        plausible.trackPageview({}, {
          callback: () => plausible.trackEvent('Signup', {
            props: { run_id: runId, plan: 'pro', seats: 3 },
            callback: () => {
              clearTimeout(timer);
              resolve();
            },
          }),
        });
      }), { apiHost: front.origin, domain: PAGE_HOST, runId: run });
      await waitForNetworkIdle(watch);
      assert.deepEqual(watch.problems(), [], 'no console error, page error or failed request');

      const sent = front.requests.filter((request) => request.path === '/api/event');
      assert.equal(sent.length, 2, 'two requests, no retry');
      for (const request of sent) {
        assert.equal(request.method, 'POST');
        assert.match(request.headers['content-type'], /^text\/plain/);
        assert.equal(request.status, 202, request.responseText);
        assert.equal(request.responseText, 'ok');
      }
      assert.equal(front.requests.filter((request) => request.method === 'OPTIONS').length, 0, 'a simple request: no preflight');

      const pageUrl = `http://${PAGE_HOST}:${pages.port}/${run}/pricing.html?utm_source=mail`;
      const isPageview = (row) => row.event === 'pageview' && row.properties.$current_url === pageUrl;
      const isSignup = (row) => row.event === 'Signup' && row.properties.run_id === run;
      const [pageview] = await waitForRows(server, isPageview, 1);
      const [signup] = await waitForRows(server, isSignup, 1);
      await sleep(500);  // anything sent twice would have landed by now
      const rows = await server.exportEvents();
      assert.equal(rows.filter(isPageview).length, 1, 'the page view exactly once');
      assert.equal(rows.filter(isSignup).length, 1, 'the custom event exactly once');

      assert.match(pageview.properties.distinct_id, PSEUDONYM_RE);
      assert.equal(signup.properties.distinct_id, pageview.properties.distinct_id, 'one visitor');
      assert.equal(signup.properties.plan, 'pro');
      assert.equal(signup.properties.seats, 3);
      assert.equal(signup.properties.$current_url, pageUrl, 'the query keeps utm_* only');
      assert.equal(pageview.properties.$screen_size, 'Laptop', 'the headless window is 1280 wide');
      assert.equal(pageview.properties.$browser, 'HeadlessChrome');
      assert.equal(pageview.properties.mp_country_code, 'US', 'the forwarded address, generalised');

      const counted = await countEvents(server, 'Signup', { filters: [{ property: 'run_id', op: 'eq', value: run }] });
      assert.deepEqual(counted, { total: 1, unique: 1 });
      assert.deepEqual(await grepTree(server.dataDir, [userAgent, CLIENT_IP]), [], 'no raw user agent or address stored');
    } finally {
      await context.close();
    }
  });
});
