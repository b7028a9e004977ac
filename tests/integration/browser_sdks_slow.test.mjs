// posthog-js 1.449.2 in headless Chromium: an answer slower than the SDK's
// request timeout. posthog-js aborts a capture after a fixed 60 s, so this
// test takes over a minute and is labelled `slow` (`make test-slow`). The
// proxy forwards the first capture at once (minpanel stores it) and holds the
// answer for 62 s; the SDK gives up, retries, and the event is still stored
// once, de-duplicated on its uuid.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';

import { startServer, randomTag } from './harness.mjs';
import {
  launchChromium, startPageServer, startFrontProxy, openPage, loadSdk, waitForNetworkIdle, waitForRows, closeAll,
} from './browser.mjs';

const POSTHOG_REQUEST_TIMEOUT_MS = 60000;

function caseIdsOf(body) {
  const text = body[0] === 0x1f && body[1] === 0x8b ? zlib.gunzipSync(body).toString('utf8') : body.toString('utf8');
  const json = JSON.parse(text);
  const batch = Array.isArray(json) ? json : (json.batch || [json]);
  return batch.map((item) => (item.properties || {}).case_id).filter(Boolean);
}

describe('posthog-js retries an answer slower than its timeout', () => {
  const run = randomTag('phslow');
  let server;
  let front;
  let pages;
  let browser;

  before(async () => {
    server = await startServer({ projectName: 'posthog-js-slow', configText: 'trusted_proxies = ["127.0.0.1"]\n' });
    front = await startFrontProxy(server, { forwardedFor: '8.8.8.8' });
    pages = await startPageServer();
    browser = await launchChromium();
  });

  after(async () => {
    await closeAll(browser && (() => browser.close()), pages && pages.close, front && front.close,
      server && (() => server.cleanup()));
  });

  it('stored once after the SDK timed out and sent it again', { timeout: 150000 }, async () => {
    const caseId = `${run}-slow`;
    const carries = (request) => request.method === 'POST' && ['/e/', '/i/v0/e/'].includes(request.path) &&
      caseIdsOf(request.body).includes(caseId);
    front.inject({ mode: 'slow', slowMs: POSTHOG_REQUEST_TIMEOUT_MS + 2000, match: carries });
    const { context, page, watch } = await openPage(browser, pages.url('/slow.html'));
    try {
      await loadSdk(page, 'posthog-js');
      await page.evaluate(({ token, apiHost, id }) => {
        window.posthog.init(token, {
          api_host: apiHost, opt_out_useragent_filter: true, autocapture: false, capture_pageview: false,
          capture_pageleave: false, disable_session_recording: true, disable_surveys: true, persistence: 'localStorage',
          request_queue_config: { flush_interval_ms: 250 },
        });
        window.posthog.capture('timed out', { case_id: id });
      }, { token: server.project.token, apiHost: front.origin, id: caseId });
      const deadline = Date.now() + POSTHOG_REQUEST_TIMEOUT_MS + 30000;
      while (front.requests.filter(carries).length < 2 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      await waitForNetworkIdle(watch, { quietMs: 1000, timeoutMs: 30000 });
    } finally {
      await context.close();
    }
    const carrying = front.requests.filter(carries);
    assert.equal(carrying.length, 2, 'the SDK timed out and sent the batch again');
    assert.deepEqual(carrying.map((request) => request.status), [200, 200], 'both reached minpanel');
    assert.equal(carrying[1].query.retry_count, '1');
    const rows = await waitForRows(server, (row) => row.properties.case_id === caseId, 1);
    assert.equal(rows.length, 1, 'delivered twice, stored once (de-duplicated on uuid)');
  });
});
