// The browser SDKs in real headless Chromium against the real minpanel
// binary: mixpanel-browser 2.83.0 and posthog-js 1.449.2, loaded from
// tests/npm into a page that the test serves on another origin
// (http://app.example.test:<port>), talking to minpanel through a reverse
// proxy that adds X-Forwarded-For (minpanel trusts 127.0.0.1), so CORS,
// credentials, preflights, gzip and retries are the browser's and the SDK's
// own. Everything is read back through the export and query APIs, and the
// data folder is searched for what must not be there.
//
// posthog-js's request timeout is a fixed 60 s, so its slower-than-timeout
// retry lives in browser_sdks_slow.test.mjs (label `slow`).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';

import {
  startServer, randomTag, nowSeconds, grepTree, PSEUDONYM_RE, INSERT_ID_RE, expectedGeneralisedUrl,
} from './harness.mjs';
import {
  launchChromium, startPageServer, startFrontProxy, openPage, loadSdk, waitForNetworkIdle, waitForRows, countEvents,
  personsAcross, closeAll, PAGE_HOST,
} from './browser.mjs';

// A public address that the IP database places in the United States; the
// proxy forwards it as the client's.
const CLIENT_IP = '8.8.8.8';
const TRUST_PROXY = 'trusted_proxies = ["127.0.0.1"]\n';

// Mixpanel's browser body: data=<url-encoded base64 of a JSON array>.
function decodeMixpanelBody(body) {
  const data = new URLSearchParams(body.toString('latin1')).get('data');
  if (data === null) {
    return [];
  }
  const text = data.trim().startsWith('[') || data.trim().startsWith('{') ? data : Buffer.from(data, 'base64').toString('utf8');
  const json = JSON.parse(text);
  return Array.isArray(json) ? json : [json];
}

// posthog-js's body: gzip (no header says so) or JSON, {api_key, batch, sent_at}.
function decodePostHogBody(body) {
  const text = body[0] === 0x1f && body[1] === 0x8b ? zlib.gunzipSync(body).toString('utf8') : body.toString('utf8');
  const json = JSON.parse(text);
  return Array.isArray(json) ? json : (json.batch || [json]);
}

const caseIdsOf = (items) => items.map((item) => (item.properties || {}).case_id).filter(Boolean);

// The major version Chromium reports in its user agent.
const majorVersion = (userAgent) => Number((userAgent.match(/Chrome\/(\d+)/) || [])[1]);

async function profileUpdatesAccepted(server) {
  const res = await server.request({ path: '/metrics', headers: server.authHeader() });
  return Number((res.text.match(/^minpanel_profile_updates_accepted_total (\d+)$/m) || [])[1]);
}

// mixpanel-browser keeps its unsent batches in localStorage (__mpq_<token>_ev,
// _pp, _gr); empty queues mean every item was answered.
async function waitForMixpanelQueuesEmpty(page, timeoutMs = 20000) {
  // Only the queues themselves: the batcher's lock keys (…_ev:X, :Y, :Z) hold
  // other values.
  await page.waitForFunction(() => {
    const queues = Object.keys(localStorage).filter((key) => /^__mpq_.*_(ev|pp|gr)$/.test(key));
    return queues.some((key) => key.endsWith('_ev')) &&
      queues.every((key) => JSON.parse(localStorage.getItem(key) || '[]').length === 0);
  }, null, { timeout: timeoutMs, polling: 100 });
}

// Inits mixpanel-browser in the page; SDK-reported errors go to window.__mpErrors.
async function initMixpanel(page, token, apiHost, options = {}) {
  await page.evaluate(({ token: projectToken, apiHost: host, options: extra }) => new Promise((resolve) => {
    window.__mpErrors = [];
    window.__mpCallbacks = [];
    window.mixpanel.init(projectToken, {
      api_host: host, track_pageview: false, persistence: 'localStorage', batch_flush_interval_ms: 200,
      error_reporter: (message, error) => window.__mpErrors.push(`${message}${error ? `: ${error}` : ''}`),
      loaded: () => resolve(),
      ...extra,
    });
  }), { token, apiHost, options });
}

describe('mixpanel-browser 2.83.0 in headless Chromium', () => {
  const run = randomTag('mpb');
  const userId = `user-${run}`;
  const fakeEmail = `fake.person.${run}@example.test`;
  const fakeName = `Fakename ${run}`;
  const pagePath = `/shop/checkout.html?utm_source=newsletter&session=${run}tok&email=${encodeURIComponent(fakeEmail)}#step-2`;
  const referrer = `http://search.example.test/results?q=${run}ref`;
  let server;
  let front;
  let pages;
  let browser;
  let userAgent;
  let start;

  before(async () => {
    server = await startServer({ projectName: 'mixpanel-browser', configText: TRUST_PROXY });
    front = await startFrontProxy(server, { forwardedFor: CLIENT_IP });
    pages = await startPageServer();
    browser = await launchChromium();
  });

  after(async () => {
    await closeAll(browser && (() => browser.close()), pages && pages.close, front && front.close,
      server && (() => server.cleanup()));
  });

  it('batched: register, track, identify and people.set are delivered, each once, with no SDK error', async () => {
    start = nowSeconds();
    const { context, page, watch } = await openPage(browser, pages.url(pagePath), { referer: referrer });
    try {
      await loadSdk(page, 'mixpanel-browser');
      await initMixpanel(page, server.project.token, front.origin);
      userAgent = await page.evaluate(({ runId, user, email, name }) => {
        const mp = window.mixpanel;
        const callback = (label) => (status) => window.__mpCallbacks.push({ label, status });
        mp.register({ run_id: runId, ab_group: 'B' });
        mp.track('Viewed Pricing', { case_id: `${runId}-anon`, tier: 'pro' }, callback('anon'));
        mp.identify(user);
        mp.people.set({ $email: email, $name: name, plan: 'pro', seats: 3 }, callback('people.set'));
        mp.track('Signed Up', { case_id: `${runId}-signup`, seats: 3, trial: true, tags: ['a', 'b'] }, callback('signup'));
        return navigator.userAgent;
      }, { runId: run, user: userId, email: fakeEmail, name: fakeName });
      await page.waitForFunction(() => window.__mpCallbacks.length === 3, null, { timeout: 10000 });
      await waitForMixpanelQueuesEmpty(page);
      await waitForNetworkIdle(watch);
      const callbacks = await page.evaluate(() => window.__mpCallbacks);
      const errors = await page.evaluate(() => window.__mpErrors);
      assert.deepEqual(callbacks.map((item) => item.status), [1, 1, 1], `the SDK's callbacks: ${JSON.stringify(callbacks)}`);
      assert.deepEqual(errors, [], 'the SDK reported no error');
      assert.deepEqual(watch.problems(), [], 'no console error, no failed request');

      const sent = front.requests.filter((request) => request.method === 'POST');
      assert.ok(sent.length > 0, 'the SDK posted through the proxy');
      for (const request of sent) {
        assert.match(request.path, /^\/(track|engage)\/$/, `${request.method} ${request.path}`);
        assert.equal(request.query.verbose, '1', 'batches are sent verbose');
        assert.equal(request.headers.origin, pages.origin, 'a cross-origin request from the test site');
        assert.equal(request.status, 200, `${request.path}: ${request.responseText}`);
        assert.equal(request.responseText, '{"status":1,"error":null}');
      }
      const sentCases = sent.filter((request) => request.path === '/track/').flatMap((request) => caseIdsOf(decodeMixpanelBody(request.body)));
      assert.deepEqual(sentCases.sort(), [`${run}-anon`, `${run}-signup`], 'each event sent once (no retry)');
    } finally {
      await context.close();
    }
  });

  it('every event arrived exactly once, as the policy stores it', async () => {
    const rows = await waitForRows(server, (row) => row.properties.run_id === run, 3);
    const end = nowSeconds();
    assert.deepEqual(rows.map((row) => row.event).sort(), ['$identify', 'Signed Up', 'Viewed Pricing'],
      `exactly the three events: ${JSON.stringify(rows.map((row) => row.event))}`);
    const byName = Object.fromEntries(rows.map((row) => [row.event, row.properties]));
    const anon = byName['Viewed Pricing'];
    const identify = byName.$identify;
    const signup = byName['Signed Up'];

    for (const properties of [anon, identify, signup]) {
      assert.match(properties.distinct_id, PSEUDONYM_RE, 'distinct_id is a pseudonym');
      assert.match(properties.$insert_id, INSERT_ID_RE, '$insert_id');
      assert.ok(properties.time >= start - 2 && properties.time <= end + 2, `time ${properties.time} in [${start}, ${end}]`);
      assert.equal(properties.ab_group, 'B', 'a super property');
      assert.equal(properties.$current_url, expectedGeneralisedUrl(pages.url(pagePath)),
        '$current_url keeps scheme, host, path and utm_* only');
      assert.equal(properties.$current_url, `http://${PAGE_HOST}:${pages.port}/shop/checkout.html?utm_source=newsletter`);
      assert.equal(properties.mp_country_code, 'US', 'the client IP became its country');
      assert.equal(properties.$referrer, undefined, 'the referrer URL is not stored');
      assert.equal(properties.$referring_domain, 'search.example.test', 'the referrer\'s host is');
      for (const key of ['ip', '$ip', '$user_agent', 'token']) {
        assert.equal(properties[key], undefined, `${key} is not stored`);
      }
      assert.equal(properties.$browser, 'Chrome', 'browser family');
      assert.equal(properties.$browser_version, majorVersion(userAgent), 'browser major version, from the real UA');
      assert.equal(properties.$os, 'Linux');
      assert.equal(properties.mp_lib, 'web');
      assert.equal(properties.$lib_version, '2.83.0');
      assert.match(properties.$device_id, PSEUDONYM_RE, '$device_id is pseudonymised');
    }
    assert.equal(anon.tier, 'pro');
    assert.equal(anon.case_id, `${run}-anon`);
    assert.deepEqual([signup.seats, signup.trial, signup.tags], [3, true, ['a', 'b']]);
    assert.equal(identify.distinct_id, signup.distinct_id, 'identified events share the user\'s pseudonym');
    // The export names the person: the anonymous event's distinct_id is the
    // user's, and the id it is stored under comes beside it (docs/identity.md).
    assert.equal(anon.distinct_id, signup.distinct_id, 'the anonymous event names the person it was merged into');
    assert.match(anon.$distinct_id_before_identity, PSEUDONYM_RE);
    assert.notEqual(anon.$distinct_id_before_identity, signup.distinct_id, 'the anonymous device id is another subject');
    assert.equal(identify.$anon_distinct_id, anon.$distinct_id_before_identity, '$anon_distinct_id: the same pseudonym as the anonymous events');
    assert.equal(signup.$distinct_id_before_identity, undefined, 'the user\'s own events are stored under the person');
    assert.equal(signup.$user_id, signup.distinct_id, '$user_id: the same pseudonym as the distinct id');
    assert.equal(anon.$device_id, signup.$device_id, 'one device');

    // The query API counts the same: each event once, one subject each.
    assert.deepEqual(await countEvents(server, 'Signed Up'), { total: 1, unique: 1 });
    assert.deepEqual(await countEvents(server, 'Viewed Pricing'), { total: 1, unique: 1 });
    // identify() linked the device id to the user: one person across it.
    assert.deepEqual(await personsAcross(server, ['Viewed Pricing', 'Signed Up'], { property: 'run_id', value: run }),
      { funnel: [1, 1], unique: 1 }, 'the anonymous visitor who signed up is one person in a funnel and in unique counts');
    // people.set and identify's $set_once of the initial referrer.
    assert.ok(await profileUpdatesAccepted(server) >= 1, 'the profile update was stored');
  });

  it('groups: set_group and a group profile reach /groups/, the group id pseudonymised', async () => {
    const caseId = `${run}-group`;
    const groupKey = `acme-${run}`;
    const { context, page, watch } = await openPage(browser, pages.url('/team.html'));
    try {
      await loadSdk(page, 'mixpanel-browser');
      await initMixpanel(page, server.project.token, front.origin);
      await page.evaluate(({ id, group, user }) => new Promise((resolve) => {
        window.mixpanel.identify(user);
        window.mixpanel.set_group('company', group);
        window.mixpanel.get_group('company', group).set({ plan: 'enterprise', seats: 40 });
        window.mixpanel.track('Invited Teammate', { case_id: id }, resolve);
      }), { id: caseId, group: groupKey, user: `${userId}-team` });
      await waitForMixpanelQueuesEmpty(page);
      await waitForNetworkIdle(watch);
      assert.deepEqual(await page.evaluate(() => window.__mpErrors), []);
      assert.deepEqual(watch.problems(), []);
    } finally {
      await context.close();
    }
    const groupRequests = front.requests.filter((request) => request.method === 'POST' && request.path === '/groups/');
    assert.equal(groupRequests.length, 1, 'one /groups/ batch');
    assert.equal(groupRequests[0].responseText, '{"status":1,"error":null}');
    const [row, ...more] = await waitForRows(server, (candidate) => candidate.properties.case_id === caseId, 1);
    assert.equal(more.length, 0, 'stored once');
    assert.equal(row.properties.company.length, 1, `company: ${JSON.stringify(row.properties.company)}`);
    assert.match(row.properties.company[0], PSEUDONYM_RE, 'the group id is a pseudonym');
    assert.ok(!JSON.stringify(row).includes(groupKey), 'the raw group id is not exported');
  });

  it('unbatched: the callback receives the server\'s verbose success', async () => {
    const { context, page, watch } = await openPage(browser, pages.url('/direct.html'));
    try {
      await loadSdk(page, 'mixpanel-browser');
      await initMixpanel(page, server.project.token, front.origin, { batch_requests: false, verbose: true });
      const answers = await page.evaluate((runId) => Promise.all([1, 2].map((index) => new Promise((resolve) => {
        window.mixpanel.track('Direct Event', { run_id: `${runId}-direct`, case_id: `${runId}-direct-${index}` }, resolve);
      }))), run);
      assert.deepEqual(answers, [{ status: 1, error: null }, { status: 1, error: null }], 'the server\'s answers, as the SDK saw them');
      await waitForNetworkIdle(watch);
      assert.deepEqual(await page.evaluate(() => window.__mpErrors), []);
      assert.deepEqual(watch.problems(), []);
    } finally {
      await context.close();
    }
    const rows = await waitForRows(server, (row) => row.properties.run_id === `${run}-direct`, 2);
    assert.deepEqual(caseIdsOf(rows).sort(), [`${run}-direct-1`, `${run}-direct-2`], 'each once');
  });

  // The SDK retries 5xx after twice its flush interval; the injected 503
  // carries the CORS headers minpanel sends, so the SDK sees the status.
  it('a 503 is retried after the flush interval, and the event stored once', async () => {
    const caseId = `${run}-503`;
    front.inject({ mode: 'unavailable', match: (request) => request.path === '/track/' && caseIdsOf(decodeMixpanelBody(request.body)).includes(caseId) });
    const { context, page, watch } = await openPage(browser, pages.url('/retry.html'));
    try {
      await loadSdk(page, 'mixpanel-browser');
      await initMixpanel(page, server.project.token, front.origin);
      assert.equal(await page.evaluate((id) => new Promise((resolve) => window.mixpanel.track('Retried', { case_id: id }, resolve)), caseId), 1,
        'enqueued');
      await waitForRows(server, (row) => row.properties.case_id === caseId, 1);
      await waitForMixpanelQueuesEmpty(page);
      await waitForNetworkIdle(watch);
      const errors = await page.evaluate(() => window.__mpErrors);
      assert.ok(errors.some((error) => /retry in \d+ ms/.test(error)), `the SDK reported the 503 and a retry: ${JSON.stringify(errors)}`);
      assert.deepEqual(watch.failedRequests, [], 'no network failure: the 503 was an answer');
    } finally {
      await context.close();
    }
    const carrying = front.requests.filter((request) => request.path === '/track/' && caseIdsOf(decodeMixpanelBody(request.body)).includes(caseId));
    assert.deepEqual(carrying.map((request) => request.status), [503, 200], 'one 503, one retry');
    const rows = (await server.exportEvents()).filter((row) => row.properties.case_id === caseId);
    assert.equal(rows.length, 1, 'stored once');
  });

  it('an answer slower than batch_request_timeout_ms: sent again, stored once', async () => {
    const caseId = `${run}-slow`;
    front.inject({
      mode: 'slow', slowMs: 2500,
      match: (request) => request.path === '/track/' && caseIdsOf(decodeMixpanelBody(request.body)).includes(caseId),
    });
    const { context, page, watch } = await openPage(browser, pages.url('/slow.html'));
    try {
      await loadSdk(page, 'mixpanel-browser');
      await initMixpanel(page, server.project.token, front.origin, { batch_request_timeout_ms: 1000 });
      assert.equal(await page.evaluate((id) => new Promise((resolve) => window.mixpanel.track('Timed Out', { case_id: id }, resolve)), caseId), 1,
        'enqueued');
      await waitForMixpanelQueuesEmpty(page);
      await waitForNetworkIdle(watch, { quietMs: 3000 });
      const errors = await page.evaluate(() => window.__mpErrors);
      assert.ok(errors.some((error) => /timeout/i.test(error)), `the SDK reported the timeout: ${JSON.stringify(errors)}`);
    } finally {
      await context.close();
    }
    const carrying = front.requests.filter((request) => request.path === '/track/' && caseIdsOf(decodeMixpanelBody(request.body)).includes(caseId));
    assert.equal(carrying.length, 2, 'the SDK gave up waiting and sent the batch again');
    assert.deepEqual(carrying.map((request) => request.status), [200, 200], 'both reached minpanel');
    const rows = (await server.exportEvents()).filter((row) => row.properties.case_id === caseId);
    assert.equal(rows.length, 1, 'delivered twice, stored once (de-duplicated on $insert_id)');
  });

  // Leaving a page sends the queue by sendBeacon (text/plain, no answer
  // read) and keeps it in localStorage; the next page of the site sends it
  // again. Two deliveries, one stored event.
  it('leaving the page: the queue goes out by sendBeacon, the next page re-sends it, stored once', async () => {
    const caseId = `${run}-beacon`;
    const carries = (request) => request.path === '/track/' && caseIdsOf(decodeMixpanelBody(request.body)).includes(caseId);
    const { context, page, watch } = await openPage(browser, pages.url('/leave.html'));
    try {
      await loadSdk(page, 'mixpanel-browser');
      // The page is left well within the flush interval, so only leaving
      // sends. The next page takes over the stored items once they are
      // twice that old (the SDK's rule for another page's queue): ~5 s.
      await initMixpanel(page, server.project.token, front.origin, { batch_flush_interval_ms: 2500 });
      assert.equal(await page.evaluate((id) => new Promise((resolve) => window.mixpanel.track('Left Page', { case_id: id }, resolve)),
        caseId), 1, 'enqueued');
      await page.goto(pages.url('/next.html'), { waitUntil: 'load' });
      const deadline = Date.now() + 10000;
      while (!front.requests.some((request) => carries(request) && request.status !== null) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const beacons = front.requests.filter(carries);
      assert.equal(beacons.length, 1, 'one beacon on leaving');
      assert.match(beacons[0].headers['content-type'] || '', /^text\/plain/, 'sendBeacon: text/plain');
      assert.equal(beacons[0].status, 200);
      await loadSdk(page, 'mixpanel-browser');
      await initMixpanel(page, server.project.token, front.origin);
      await waitForMixpanelQueuesEmpty(page);
      await waitForNetworkIdle(watch);
      assert.deepEqual(await page.evaluate(() => window.__mpErrors), []);
    } finally {
      await context.close();
    }
    assert.equal(front.requests.filter(carries).length, 2, 'sent by the beacon, then again by the next page');
    const rows = await waitForRows(server, (row) => row.properties.case_id === caseId, 1);
    assert.equal(rows.length, 1, 'stored once (de-duplicated on $insert_id)');
  });

  it('no email, name, raw id, IP or user agent on disk', async () => {
    const stopped = await server.stop('SIGTERM');
    assert.deepEqual(stopped, { code: 0, signal: null });
    const hits = await grepTree(server.dataDir, [fakeEmail, fakeName, userId, CLIENT_IP, userAgent, `${run}tok`, `acme-${run}`]);
    assert.deepEqual(hits, [], 'nothing personal in the data folder');
    for (const needle of [fakeEmail, fakeName, CLIENT_IP]) {
      assert.ok(!server.stderr.includes(needle), `${needle} not in the server's output`);
    }
  });

  // mixpanel-browser keeps the first referrer in the super property
  // $initial_referrer, a copy of the referrer that the default policy
  // reduces to its host, as it does the referrer itself.
  it('the referrer\'s query is gone from $initial_referrer too', async () => {
    assert.deepEqual(await grepTree(server.dataDir, [`${run}ref`]), []);
  });
});

// Inits posthog-js; errors it reports go to window.__phErrors.
async function initPostHog(page, token, apiHost, options = {}) {
  await page.evaluate(({ token: projectToken, apiHost: host, options: extra }) => new Promise((resolve) => {
    window.__phErrors = [];
    window.posthog.init(projectToken, {
      api_host: host,
      // Headless Chromium is a bot to posthog-js, which drops its events
      // unless told otherwise (its own advice for end-to-end tests).
      opt_out_useragent_filter: true,
      autocapture: false, capture_pageview: false, capture_pageleave: false, disable_session_recording: true,
      disable_surveys: true, persistence: 'localStorage', request_queue_config: { flush_interval_ms: 250 },
      on_request_error: (response) => window.__phErrors.push(`${response.statusCode} ${response.text || ''}`),
      loaded: () => resolve(),
      ...extra,
    });
  }), { token, apiHost, options });
}

const POSTHOG_CAPTURE_PATHS = new Set(['/e/', '/i/v0/e/']);
const isPostHogCapture = (request) => request.method === 'POST' && POSTHOG_CAPTURE_PATHS.has(request.path);

describe('posthog-js 1.449.2 in headless Chromium', () => {
  const run = randomTag('phjs');
  const userId = `user-${run}`;
  const fakeEmail = `fake.person.${run}@example.test`;
  const fakeName = `Fakename ${run}`;
  const pagePath = `/pricing.html?utm_campaign=spring&coupon=${run}tok#plans`;
  let server;
  let front;
  let pages;
  let browser;
  let userAgent;
  let start;

  before(async () => {
    server = await startServer({ projectName: 'posthog-js', configText: TRUST_PROXY });
    front = await startFrontProxy(server, { forwardedFor: CLIENT_IP });
    pages = await startPageServer();
    browser = await launchChromium();
  });

  after(async () => {
    await closeAll(browser && (() => browser.close()), pages && pages.close, front && front.close,
      server && (() => server.cleanup()));
  });

  it('$pageview, identify and capture: gzip, no preflight, every answer 200, no console error', async () => {
    start = nowSeconds();
    const { context, page, watch } = await openPage(browser, pages.url(pagePath));
    try {
      await loadSdk(page, 'posthog-js');
      await initPostHog(page, server.project.token, front.origin);
      userAgent = await page.evaluate((runId) => {
        window.posthog.register({ run_id: runId });
        window.posthog.capture('$pageview');
        return navigator.userAgent;
      }, run);
      // After the remote config: its endpoint and compression.
      await page.waitForFunction((token) => window._POSTHOG_REMOTE_CONFIG && window._POSTHOG_REMOTE_CONFIG[token],
        server.project.token, { timeout: 10000 });
      await page.evaluate(({ runId, user, email, name }) => {
        window.posthog.identify(user, { email, name, plan: 'pro' }, { signup_run: runId });
        window.posthog.capture('purchase', { case_id: `${runId}-purchase`, price: 49.5, currency: 'EUR', items: ['a', 'b'] });
      }, { runId: run, user: userId, email: fakeEmail, name: fakeName });
      await waitForRows(server, (row) => row.properties.run_id === run, 3);
      await waitForNetworkIdle(watch, { quietMs: 800 });
      assert.deepEqual(await page.evaluate(() => window.__phErrors), [], 'the SDK reported no request error');
      assert.deepEqual(watch.problems(), [], 'no console error, no failed request');
    } finally {
      await context.close();
    }
    const captures = front.requests.filter(isPostHogCapture);
    assert.ok(captures.length > 0, 'captures went through the proxy');
    for (const request of captures) {
      assert.equal(request.status, 200, `${request.path}: ${request.responseText}`);
      assert.equal(request.responseText, '{"status":1}');
      assert.match(request.headers['content-type'] || '', /^text\/plain/, 'a CORS-simple content type');
      assert.deepEqual([...request.body.subarray(0, 2)], [0x1f, 0x8b], 'gzip-js: raw gzip, no header says so');
    }
    assert.ok(captures.some((request) => request.path === '/i/v0/e/'), 'the remote config\'s endpoint is used');
    const preflights = front.requests.filter((request) => request.method === 'OPTIONS');
    assert.deepEqual(preflights.map((request) => request.path), [], 'no preflight');
    assert.ok(front.requests.some((request) => request.path === `/array/${server.project.token}/config.js` && request.status === 200),
      'the remote config was served');
    const sentEvents = captures.flatMap((request) => decodePostHogBody(request.body)).filter((item) => item.properties.run_id === run);
    assert.deepEqual(sentEvents.map((item) => item.event).sort(), ['$identify', '$pageview', 'purchase'], 'each event sent once');
  });

  it('every event arrived exactly once, as the policy stores it', async () => {
    const rows = (await server.exportEvents()).filter((row) => row.properties.run_id === run);
    const end = nowSeconds();
    assert.deepEqual(rows.map((row) => row.event).sort(), ['$identify', '$pageview', 'purchase'],
      `exactly the three events: ${JSON.stringify(rows.map((row) => row.event))}`);
    const byName = Object.fromEntries(rows.map((row) => [row.event, row.properties]));
    const pageview = byName.$pageview;
    const identify = byName.$identify;
    const purchase = byName.purchase;
    for (const properties of [pageview, identify, purchase]) {
      assert.match(properties.distinct_id, PSEUDONYM_RE, 'distinct_id is a pseudonym');
      assert.match(properties.$insert_id, INSERT_ID_RE);
      assert.ok(properties.time >= start - 2 && properties.time <= end + 2, `time ${properties.time} in [${start}, ${end}]`);
      assert.equal(properties.$current_url, `http://${PAGE_HOST}:${pages.port}/pricing.html?utm_campaign=spring`,
        '$current_url: scheme, host, path and utm_* only');
      assert.equal(properties.mp_country_code, 'US', 'the client IP became its country');
      for (const key of ['ip', '$ip', '$user_agent', '$raw_user_agent', 'token', 'email', 'name', '$set']) {
        assert.equal(properties[key], undefined, `${key} is not stored`);
      }
      assert.equal(properties.$browser, 'Chrome');
      assert.equal(properties.$browser_version, majorVersion(userAgent), 'major version from the real UA');
      assert.equal(properties.$os, 'Linux');
      assert.equal(properties.mp_lib, 'web');
      assert.equal(properties.$lib_version, '1.449.2');
    }
    assert.equal(identify.distinct_id, purchase.distinct_id, 'identified events share the user\'s pseudonym');
    // The export names the person; the anonymous id the pageview is stored
    // under comes as $distinct_id_before_identity (docs/identity.md).
    assert.equal(pageview.distinct_id, purchase.distinct_id, 'the pageview names the person it was merged into');
    assert.match(pageview.$distinct_id_before_identity, PSEUDONYM_RE);
    assert.notEqual(pageview.$distinct_id_before_identity, purchase.distinct_id, 'the anonymous id is another subject');
    assert.equal(identify.$anon_distinct_id, pageview.$distinct_id_before_identity, '$anon_distinct_id: the anonymous events\' pseudonym');
    assert.deepEqual([purchase.price, purchase.currency, purchase.items], [49.5, 'EUR', ['a', 'b']]);
    assert.deepEqual(await countEvents(server, 'purchase'), { total: 1, unique: 1 });
    assert.deepEqual(await countEvents(server, '$pageview'), { total: 1, unique: 1 });
    // identify() with $anon_distinct_id linked the two ids: one person.
    assert.deepEqual(await personsAcross(server, ['$pageview', 'purchase'], { property: 'run_id', value: run }),
      { funnel: [1, 1], unique: 1 }, 'the anonymous visitor who bought is one person in a funnel and in unique counts');
    assert.ok(await profileUpdatesAccepted(server) >= 1, 'identify\'s $set and $set_once were stored as a profile update');
  });

  it('group: $groupidentify and every later event\'s $groups carry the group\'s pseudonym', async () => {
    const caseId = `${run}-group`;
    const groupKey = `acme-${run}`;
    const { context, page, watch } = await openPage(browser, pages.url('/team.html'));
    try {
      await loadSdk(page, 'posthog-js');
      await initPostHog(page, server.project.token, front.origin);
      await page.evaluate(({ id, group }) => {
        window.posthog.group('company', group, { name: 'Acme', employees: 12 });
        window.posthog.capture('invited teammate', { case_id: id });
      }, { id: caseId, group: groupKey });
      await waitForRows(server, (row) => row.properties.case_id === caseId, 1);
      await waitForNetworkIdle(watch);
      assert.deepEqual(await page.evaluate(() => window.__phErrors), []);
      assert.deepEqual(watch.problems(), []);
    } finally {
      await context.close();
    }
    const rows = await server.exportEvents();
    const invited = rows.filter((row) => row.properties.case_id === caseId);
    assert.equal(invited.length, 1, 'stored once');
    const company = invited[0].properties['$groups.company'];
    assert.match(company, PSEUDONYM_RE, '$groups.company is a pseudonym');
    const groupIdentify = rows.filter((row) => row.event === '$groupidentify' && row.properties['$groups.company'] === company);
    assert.equal(groupIdentify.length, 1, '$groupidentify once, under the same group pseudonym');
    assert.equal(groupIdentify[0].properties.$group_key, undefined, 'the raw group key is not stored');
    assert.ok(!JSON.stringify(rows).includes(groupKey), 'the raw group id is not exported');
  });

  it('a 503 is retried with retry_count=1, and the event stored once', async () => {
    const caseId = `${run}-503`;
    const carries = (request) => isPostHogCapture(request) && caseIdsOf(decodePostHogBody(request.body)).includes(caseId);
    front.inject({ mode: 'unavailable', match: carries });
    const { context, page, watch } = await openPage(browser, pages.url('/retry.html'));
    try {
      await loadSdk(page, 'posthog-js');
      await initPostHog(page, server.project.token, front.origin);
      await page.evaluate((id) => window.posthog.capture('retried', { case_id: id }), caseId);
      await waitForRows(server, (row) => row.properties.case_id === caseId, 1, { timeoutMs: 20000 });
      await waitForNetworkIdle(watch);
      assert.deepEqual(await page.evaluate(() => window.__phErrors), ['503 {"error":"injected by the test proxy"}'],
        'the SDK saw the 503');
      assert.deepEqual(watch.failedRequests, [], 'no network failure: the 503 was an answer');
    } finally {
      await context.close();
    }
    const carrying = front.requests.filter(carries);
    assert.deepEqual(carrying.map((request) => request.status), [503, 200], 'one 503, one retry');
    assert.equal(carrying[0].query.retry_count, undefined);
    assert.equal(carrying[1].query.retry_count, '1', 'the retry says so');
    assert.equal((await server.exportEvents()).filter((row) => row.properties.case_id === caseId).length, 1, 'stored once');
  });

  // On leaving the page posthog-js sends its queue by sendBeacon, whose
  // answer no one reads: minpanel must take the beacon's body as it is.
  it('leaving the page: the queued event goes out by sendBeacon and is stored once', async () => {
    const caseId = `${run}-beacon`;
    const carries = (request) => isPostHogCapture(request) && caseIdsOf(decodePostHogBody(request.body)).includes(caseId);
    const { context, page } = await openPage(browser, pages.url('/leave.html'));
    try {
      await loadSdk(page, 'posthog-js');
      // The longest queue interval posthog-js allows: only leaving sends.
      await initPostHog(page, server.project.token, front.origin, { request_queue_config: { flush_interval_ms: 5000 } });
      await page.evaluate((id) => window.posthog.capture('left page', { case_id: id }), caseId);
      await page.goto(pages.url('/next.html'), { waitUntil: 'load' });
      const rows = await waitForRows(server, (row) => row.properties.case_id === caseId, 1);
      assert.equal(rows.length, 1, 'stored once');
    } finally {
      await context.close();
    }
    const sent = front.requests.filter(carries);
    assert.equal(sent.length, 1, 'one request');
    // A beacon is a no-cors request; posthog-js's fetch captures are cors.
    assert.equal(sent[0].headers['sec-fetch-mode'], 'no-cors', 'sent by sendBeacon');
    assert.equal(sent[0].status, 200, sent[0].responseText);
  });

  it('no email, name, raw id, IP or user agent on disk', async () => {
    const stopped = await server.stop('SIGTERM');
    assert.deepEqual(stopped, { code: 0, signal: null });
    const hits = await grepTree(server.dataDir, [fakeEmail, fakeName, userId, CLIENT_IP, userAgent, `acme-${run}`]);
    assert.deepEqual(hits, [], 'nothing personal in the data folder');
    for (const needle of [fakeEmail, fakeName, CLIENT_IP]) {
      assert.ok(!server.stderr.includes(needle), `${needle} not in the server's output`);
    }
  });

  // posthog-js copies the page URL into $session_entry_url, $initial_current_url
  // and the like; the default policy generalises every copy as it does the
  // page URL, so the coupon code in the page's query is nowhere.
  it('the page URL\'s query is gone from every copy posthog-js makes', async () => {
    assert.deepEqual(await grepTree(server.dataDir, [`${run}tok`]), []);
  });
});
