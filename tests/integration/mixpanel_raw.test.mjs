// Raw HTTP against the Mixpanel routes for the forms the node SDK does not
// send (browser SDK, sendBeacon, compressed bodies, hand-written clients), the
// refusals, de-duplication, CORS and the privacy guarantees.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import zlib from 'node:zlib';

import {
  startServer, hex32, randomTag, nowSeconds, isRefusal, freeProperties, expectedStoredProperties, grepTree,
  basicAuth, PSEUDONYM_RE, INSERT_ID_RE, rawHttpExchange, createProject, runCli, isoDate,
} from './harness.mjs';

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64');
const FORM = { 'Content-Type': 'application/x-www-form-urlencoded' };

describe('mixpanel wire forms (raw HTTP)', () => {
  const run = randomTag('raw');
  let server;
  let token;
  const accepted = new Map(); // case_id -> {event, properties sent}

  const event = (caseId, extra = {}) => ({
    event: `Raw ${caseId.split('-').pop()}`,
    properties: { token, distinct_id: `raw-user-${run}`, case_id: `${run}-${caseId}`, time: nowSeconds() - 300, ...extra },
  });

  const remember = (...items) => {
    for (const item of items) {
      accepted.set(item.properties.case_id, item);
    }
  };

  async function exportByCase() {
    const rows = await server.exportEvents();
    const map = new Map();
    for (const row of rows) {
      const key = row.properties.case_id;
      if (!map.has(key)) {
        map.set(key, []);
      }
      map.get(key).push(row);
    }
    return { rows, map };
  }

  before(async () => {
    server = await startServer({ projectName: 'raw' });
    token = server.project.token;
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  describe('accepted forms', () => {
    it('POST data=<base64> with literal + and / (mixpanel-node does not URL-encode)', async () => {
      // Find a payload whose base64 holds both '+' and '/'.
      let item;
      let encoded;
      for (let nonce = 0; nonce < 1000; nonce += 1) {
        // Shifting the text by one byte changes the base64 alignment.
        item = event('plus', { note: `${'x'.repeat(nonce % 3)}~~~???>>>ÿÿ${nonce}`, unicode: 'Grüße ✓' });
        encoded = b64([item]);
        if (encoded.includes('+') && encoded.includes('/')) {
          break;
        }
      }
      assert.ok(encoded.includes('+') && encoded.includes('/'), 'the payload exercises + and /');
      const res = await server.request({ method: 'POST', path: '/track?ip=0&verbose=0', headers: FORM, body: `data=${encoded}` });
      assert.equal(res.status, 200);
      assert.equal(res.text, '1');
      remember(item);
    });

    it('sendBeacon: text/plain body data=<urlencoded base64> on /track/', async () => {
      const items = [event('beacon1', { $browser: 'Firefox' }), event('beacon2', { seats: 5 })];
      const res = await server.request({
        method: 'POST', path: '/track/?verbose=1&ip=1&_=1795685260831',
        headers: { 'Content-Type': 'text/plain;charset=UTF-8' }, body: `data=${encodeURIComponent(b64(items))}`,
      });
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.text), { status: 1, error: null });
      remember(...items);
    });

    it('POST data=<urlencoded raw JSON> (api_payload_format json)', async () => {
      const items = [event('rawform', { tags: ['x', 'y+z'] })];
      const res = await server.request({
        method: 'POST', path: '/track/?verbose=1', headers: FORM, body: `data=${encodeURIComponent(JSON.stringify(items))}`,
      });
      assert.deepEqual(JSON.parse(res.text), { status: 1, error: null });
      remember(...items);
    });

    it('GET with data=<base64> in the query', async () => {
      const item = event('get64', { plan: 'team' });
      const res = await server.request({ path: `/track?ip=0&verbose=0&data=${encodeURIComponent(b64(item))}` });
      assert.equal(res.status, 200);
      assert.equal(res.text, '1');
      remember(item);
    });

    it('GET with raw JSON in the query', async () => {
      const item = event('getjson', { flag: true });
      const res = await server.request({ path: `/track/?data=${encodeURIComponent(JSON.stringify(item))}` });
      assert.equal(res.text, '1');
      remember(item);
    });

    it('raw JSON body (application/json)', async () => {
      const items = [event('json1'), event('json2', { score: -1.25 })];
      const res = await server.request({
        method: 'POST', path: '/track', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(items),
      });
      assert.equal(res.text, '1');
      remember(...items);
    });

    it('Content-Encoding: gzip raw JSON body', async () => {
      const items = [event('gzip', { compressed: 'gzip' })];
      const res = await server.request({
        method: 'POST', path: '/track?verbose=1',
        headers: { 'Content-Type': 'application/json', 'Content-Encoding': 'gzip' }, body: zlib.gzipSync(JSON.stringify(items)),
      });
      assert.deepEqual(JSON.parse(res.text), { status: 1, error: null });
      remember(...items);
    });

    it('Content-Encoding: deflate form body', async () => {
      const items = [event('deflate', { compressed: 'deflate' })];
      const res = await server.request({
        method: 'POST', path: '/track?verbose=1',
        headers: { ...FORM, 'Content-Encoding': 'deflate' }, body: zlib.deflateSync(`data=${b64(items)}`),
      });
      assert.deepEqual(JSON.parse(res.text), { status: 1, error: null });
      remember(...items);
    });

    it('/engage and /groups answer 1 and {"status":1}', async () => {
      const profile = { $token: token, $distinct_id: `raw-user-${run}`, $set: { plan: 'pro' } };
      let res = await server.request({ path: `/engage?data=${encodeURIComponent(b64(profile))}` });
      assert.equal(res.text, '1');
      res = await server.request({ method: 'POST', path: '/engage/?verbose=1', headers: FORM, body: `data=${b64([profile])}` });
      assert.deepEqual(JSON.parse(res.text), { status: 1, error: null });
      const group = { $token: token, $group_key: 'company', $group_id: `acme-${run}`, $set: { plan: 'pro' } };
      res = await server.request({ path: `/groups/?verbose=1&data=${encodeURIComponent(b64(group))}` });
      assert.deepEqual(JSON.parse(res.text), { status: 1, error: null });
    });

    it('/track accepts exactly 50 events', async () => {
      const items = [];
      for (let index = 0; index < 50; index += 1) {
        items.push(event(`fifty${index}`, { index }));
      }
      const res = await server.request({ method: 'POST', path: '/track', headers: FORM, body: `data=${b64(items)}` });
      assert.equal(res.text, '1');
      remember(...items);
    });

    it('/import accepts exactly 2000 events in one JSON array', async () => {
      const items = [];
      for (let index = 0; index < 2000; index += 1) {
        items.push(event(`i2000x${index}`, { index, $insert_id: hex32() }));
      }
      const res = await server.importJson(items, { query: 'strict=1' });
      assert.equal(res.status, 200, res.text.slice(0, 300));
      assert.deepEqual(JSON.parse(res.text), { code: 200, num_records_imported: 2000, status: 'OK' });
      remember(...items);
    });

    it('/import strict=1 all valid: {"code":200,"num_records_imported":N,"status":"OK"}', async () => {
      const items = [event('strictok1'), event('strictok2')];
      const res = await server.importJson(items, { query: 'strict=1' });
      assert.equal(res.status, 200);
      assert.deepEqual(JSON.parse(res.text), { code: 200, num_records_imported: 2, status: 'OK' });
      remember(...items);
    });

    it('/import NDJSON body with time in ms, auth by api_key query', async () => {
      const ms = Date.now() - 86400 * 1000 * 3 + 5;
      const items = [event('ndjson1', { time: ms }), event('ndjson2', { time: ms + 1000 })];
      const res = await server.request({
        method: 'POST', path: `/import?api_key=${encodeURIComponent(server.project.secret)}`,
        headers: { 'Content-Type': 'application/x-ndjson' }, body: items.map((item) => JSON.stringify(item)).join('\n'),
      });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.text, '1');
      items[0].expectTime = Math.floor(ms / 1000);
      items[1].expectTime = Math.floor(ms / 1000) + 1;
      remember(...items);
    });

    it('/import with Basic anyuser:secret and project_id', async () => {
      const items = [event('svcacct')];
      const res = await server.request({
        method: 'POST', path: `/import?project_id=${server.project.id}`,
        headers: { Authorization: basicAuth(`any-user:${server.project.secret}`), 'Content-Type': 'application/json' },
        body: JSON.stringify(items),
      });
      assert.equal(res.status, 200, res.text);
      remember(...items);
    });

    it('/import strict=1 partial failure: valid rows stored, failed_records right', async () => {
      const good1 = event('partial-good1');
      const good2 = event('partial-good2');
      const good3 = event('partial-good3');
      const noTime = event('partial-notime', { $insert_id: `bad-${run}-1` });
      delete noTime.properties.time;
      const noName = event('partial-noname', { $insert_id: `bad-${run}-2` });
      delete noName.event;
      const items = [good1, noTime, good2, noName, good3];
      const res = await server.importJson(items, { query: 'strict=1' });
      assert.equal(res.status, 400, res.text);
      const body = JSON.parse(res.text);
      assert.equal(body.code, 400);
      assert.equal(body.num_records_imported, 3);
      assert.equal(typeof body.error, 'string');
      assert.ok(Array.isArray(body.failed_records));
      assert.deepEqual(body.failed_records.map((record) => record.index), [1, 3]);
      assert.equal(body.failed_records[0].$insert_id, `bad-${run}-1`);
      assert.equal(body.failed_records[1].$insert_id, `bad-${run}-2`);
      for (const record of body.failed_records) {
        assert.equal(typeof record.field, 'string');
        assert.ok(record.message.length > 0);
      }
      assert.match(body.failed_records[0].field, /time/);
      assert.match(body.failed_records[1].field, /event/);
      remember(good1, good2, good3);
    });

    it('verbose=1 failure shape {"status":0,"error":"..."} and plain 0', async () => {
      let res = await server.request({ path: '/track?verbose=1&data=not-json-not-base64!!' });
      const body = JSON.parse(res.text);
      assert.equal(body.status, 0);
      assert.equal(typeof body.error, 'string');
      assert.ok(body.error.length > 0);
      res = await server.request({ path: '/track?data=not-json-not-base64!!' });
      assert.ok(res.text === '0' || (res.status >= 400 && res.status < 500), `plain failure: ${res.status} ${res.text}`);
      assert.notEqual(res.text, '1');
    });

    it('every accepted event is exported once with its fields', async () => {
      const { map } = await exportByCase();
      // Every event so far was sent for the same raw distinct id.
      const subjectRows = await server.exportEvents({ distinctId: `raw-user-${run}` });
      assert.ok(subjectRows.length >= accepted.size, 'the distinct_id filter finds the events');
      const subject = subjectRows[0].properties.distinct_id;
      for (const [caseId, item] of accepted) {
        const rows = map.get(caseId) || [];
        assert.equal(rows.length, 1, `${caseId}: exported ${rows.length} times`);
        const row = rows[0];
        if (item.event !== undefined) {
          assert.equal(row.event, item.event, `${caseId}: event name`);
        }
        const expectTime = item.expectTime ?? item.properties.time;
        assert.equal(row.properties.time, expectTime, `${caseId}: time`);
        assert.match(row.properties.distinct_id, PSEUDONYM_RE);
        assert.equal(row.properties.distinct_id, subject, `${caseId}: same subject for one raw id`);
        assert.match(row.properties.$insert_id, INSERT_ID_RE);
        assert.deepEqual(freeProperties(row), expectedStoredProperties(item.properties), `${caseId}: properties`);
      }
    });
  });

  describe('refusals store nothing and leave the server healthy', () => {
    const refused = [];
    let countBefore;

    before(async () => {
      countBefore = (await server.exportEvents()).length;
    });

    const bad = (name, extra = {}) => {
      const item = event(`bad-${name}`, extra);
      refused.push(item.properties.case_id);
      return item;
    };

    async function expectRefused(name, request) {
      const res = await server.request(request);
      assert.ok(isRefusal(res), `${name}: expected a 4xx or a 0 body, got ${res.status} ${res.text.slice(0, 200)}`);
      assert.notEqual(res.text, '1', `${name}: must not claim success`);
      return res;
    }

    it('51 events on /track are refused as a whole', async () => {
      const items = [];
      for (let index = 0; index < 51; index += 1) {
        items.push(bad(`51-${index}`, { index }));
      }
      await expectRefused('51 events', { method: 'POST', path: '/track', headers: FORM, body: `data=${b64(items)}` });
      await expectRefused('51 events verbose', { method: 'POST', path: '/track?verbose=1', headers: FORM, body: `data=${b64(items)}` });
    });

    it('2001 events on /import are refused', async () => {
      const items = [];
      for (let index = 0; index < 2001; index += 1) {
        items.push(bad(`2001-${index}`, { index }));
      }
      const res = await server.importJson(items);
      assert.ok(res.status >= 400 && res.status < 500, `2001 events: ${res.status}`);
    });

    it('malformed JSON', async () => {
      const text = JSON.stringify([bad('malformed')]).slice(0, -3);
      await expectRefused('malformed JSON body', { method: 'POST', path: '/track', headers: { 'Content-Type': 'application/json' }, body: text });
      await expectRefused('malformed JSON in data=', { method: 'POST', path: '/track', headers: FORM, body: `data=${encodeURIComponent(text)}` });
      await expectRefused('malformed import', { method: 'POST', path: '/import', headers: { ...server.authHeader(), 'Content-Type': 'application/json' }, body: text });
    });

    it('bad base64', async () => {
      const encoded = b64([bad('b64')]);
      const broken = `${encoded.slice(0, 20)}*&%$#${encoded.slice(20)}`;
      await expectRefused('bad base64', { method: 'POST', path: '/track', headers: FORM, body: `data=${broken}` });
      await expectRefused('truncated base64', { method: 'POST', path: '/track', headers: FORM, body: `data=${encoded.slice(0, -7)}` });
    });

    it('invalid UTF-8', async () => {
      const item = bad('utf8', { note: 'XXINVALIDXX' });
      const text = JSON.stringify([item]);
      const bytes = Buffer.from(text);
      const at = bytes.indexOf('XXINVALIDXX');
      bytes[at + 2] = 0xff;
      bytes[at + 3] = 0xc3;
      await expectRefused('invalid UTF-8 JSON body', { method: 'POST', path: '/track', headers: { 'Content-Type': 'application/json' }, body: bytes });
      await expectRefused('invalid UTF-8 in base64', { method: 'POST', path: '/track', headers: FORM, body: `data=${bytes.toString('base64')}` });
    });

    it('deep nesting', async () => {
      const depth = 5000;
      const item = bad('deep');
      const text = JSON.stringify([item]).replace('"token"', `"deep":${'['.repeat(depth)}${']'.repeat(depth)},"token"`);
      await expectRefused('deep arrays', { method: 'POST', path: '/track', headers: { 'Content-Type': 'application/json' }, body: text });
      const item2 = bad('deepobj');
      const text2 = JSON.stringify([item2]).replace('"token"', `"deep":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)},"token"`);
      await expectRefused('deep objects', { method: 'POST', path: '/track', headers: { 'Content-Type': 'application/json' }, body: text2 });
    });

    it('missing event name, missing distinct_id, blocked distinct_id, missing token', async () => {
      const noName = bad('noname');
      delete noName.event;
      await expectRefused('missing event', { method: 'POST', path: '/track', headers: FORM, body: `data=${b64([noName])}` });
      const emptyName = bad('emptyname');
      emptyName.event = '';
      await expectRefused('empty event', { method: 'POST', path: '/track', headers: FORM, body: `data=${b64([emptyName])}` });
      const noId = bad('noid');
      delete noId.properties.distinct_id;
      await expectRefused('missing distinct_id', { method: 'POST', path: '/track', headers: FORM, body: `data=${b64([noId])}` });
      for (const blocked of ['undefined', '']) {
        const item = bad(`blocked${blocked || 'empty'}`, { distinct_id: blocked });
        await expectRefused(`distinct_id "${blocked}"`, { method: 'POST', path: '/track', headers: FORM, body: `data=${b64([item])}` });
      }
      const noToken = bad('notoken');
      delete noToken.properties.token;
      await expectRefused('missing token', { method: 'POST', path: '/track', headers: FORM, body: `data=${b64([noToken])}` });
      const wrongToken = bad('wrongtoken', { token: `nope-${hex32()}` });
      await expectRefused('unknown token', { method: 'POST', path: '/track', headers: FORM, body: `data=${b64([wrongToken])}` });
    });

    it('import: missing time, missing or wrong secret', async () => {
      const noTime = bad('import-notime');
      delete noTime.properties.time;
      const res = await server.importJson([noTime]);
      assert.ok(res.status >= 400 && res.status < 500, `import without time: ${res.status}`);
      const anon = await server.request({
        method: 'POST', path: '/import', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify([bad('import-noauth')]),
      });
      assert.equal(anon.status, 401, 'import without auth');
      const wrong = await server.importJson([bad('import-wrongsecret')], { secret: `wrong-${hex32()}` });
      assert.equal(wrong.status, 401, 'import with a wrong secret');
      const wrongProject = await server.request({
        method: 'POST', path: `/import?project_id=${server.project.id + 999}`,
        headers: { Authorization: basicAuth(`any-user:${server.project.secret}`), 'Content-Type': 'application/json' },
        body: JSON.stringify([bad('import-wrongproject')]),
      });
      // A valid secret presented for another project_id: 401 or 403 (the contract names only wrong/missing secrets).
      assert.ok([401, 403].includes(wrongProject.status), `import with the secret of another project_id: ${wrongProject.status}`);
      const exportNoAuth = await server.request({ path: '/api/2.0/export?from_date=2020-01-01&to_date=2020-01-02' });
      assert.equal(exportNoAuth.status, 401, 'export without auth');
    });

    it('gzip bomb', async () => {
      const item = bad('bomb');
      const head = `data=${b64([item])}`;
      const gzip = zlib.createGzip({ level: 9 });
      const chunks = [];
      gzip.on('data', (chunk) => chunks.push(chunk));
      const done = new Promise((resolve) => gzip.on('end', resolve));
      gzip.write(head);
      const zeros = Buffer.alloc(1 << 20, 0x20);
      for (let index = 0; index < 1024; index += 1) {
        if (!gzip.write(zeros)) {
          await new Promise((resolve) => gzip.once('drain', resolve));
        }
      }
      gzip.end();
      await done;
      const body = Buffer.concat(chunks);
      assert.ok(body.length < 4 << 20, 'the bomb is small on the wire');
      const res = await expectRefused('gzip bomb (1 GiB inflated)', {
        method: 'POST', path: '/track', headers: { ...FORM, 'Content-Encoding': 'gzip' }, body,
      });
      assert.ok(res.status === 413 || res.status === 400 || res.text === '0', `gzip bomb: ${res.status}`);
    });

    // The body is held back until the answer to the head can arrive, so this
    // does not depend on how the server closes (see the next test).
    it('oversize body gets 413 (declared Content-Length)', async () => {
      const bytes = 64 << 20;
      const head = (framing) => `POST /import HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
        `Authorization: ${server.authHeader().Authorization}\r\nContent-Type: application/json\r\n${framing}\r\n\r\n`;
      const declared = await rawHttpExchange({ port: server.port, head: head(`Content-Length: ${bytes}`), bodyBytes: bytes });
      assert.equal(declared.status, 413, `Content-Length ${bytes}: ${declared.text.slice(0, 200)} (${declared.error})`);
    });

    // A client that writes the whole body at once (node:http, browsers, the
    // SDKs) must see the 413 too, or it cannot split the batch (mixpanel-browser
    // and posthog-node halve on 413 but retry a network error as it was). That
    // needs a lingering close: answer, then drain the body (bounded) before
    // closing; closing at once resets the connection and the answer is lost.
    it('a client sending the whole oversize body at once still receives the 413', async () => {
      // Chunked: the server only knows once 16 MiB have arrived, so the client is always still writing.
      const bytes = 64 << 20;
      const chunked = await rawHttpExchange({
        port: server.port, bodyBytes: bytes, chunked: true, bodyDelayMs: 0,
        head: `POST /import HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nAuthorization: ${server.authHeader().Authorization}\r\n` +
          'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
      });
      assert.equal(chunked.status, 413, `chunked ${bytes}: ${chunked.text.slice(0, 200)} (${chunked.error})`);
      const body = JSON.stringify([bad('oversize-eager', { pad: 'p'.repeat(20 << 20) })]);
      for (let attempt = 0; attempt < 3; attempt += 1) {
        let res;
        try {
          res = await server.request({
            method: 'POST', path: '/import', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
            body, timeoutMs: 60000,
          });
        } catch (error) {
          assert.fail(`attempt ${attempt}: the 413 was lost to ${error.code || error.message}`);
        }
        assert.equal(res.status, 413);
      }
    });

    it('unsupported Content-Encoding and corrupt gzip are refused', async () => {
      const text = `data=${b64([bad('br')])}`;
      await expectRefused('br encoding', { method: 'POST', path: '/track', headers: { ...FORM, 'Content-Encoding': 'br' }, body: text });
      const gz = zlib.gzipSync(`data=${b64([bad('corruptgz')])}`);
      gz[gz.length - 6] ^= 0xff;
      await expectRefused('corrupt gzip', { method: 'POST', path: '/track', headers: { ...FORM, 'Content-Encoding': 'gzip' }, body: gz });
    });

    it('nothing refused was stored and the server is healthy', async () => {
      assert.ok(server.alive, 'server still running');
      const health = await server.request({ path: '/healthz' });
      assert.equal(health.status, 200);
      const rows = await server.exportEvents();
      const stored = new Set(rows.map((row) => row.properties.case_id));
      const leaked = refused.filter((caseId) => stored.has(caseId));
      assert.deepEqual(leaked, [], 'refused events must not be stored');
      assert.equal(rows.length, countBefore, 'export row count unchanged by refusals');
      // And the server still ingests.
      const ok = event('after-refusals');
      const res = await server.request({ method: 'POST', path: '/track', headers: FORM, body: `data=${b64([ok])}` });
      assert.equal(res.text, '1');
    });
  });

  describe('de-duplication', () => {
    it('same $insert_id twice is one row, also across a restart', async () => {
      const item = event('dedupe', { $insert_id: hex32() });
      const nonHex = event('dedupe-nonhex', { $insert_id: `client-${run}-77` });
      const noId = event('dedupe-noid', { fixed: 'same content' });
      for (let round = 0; round < 2; round += 1) {
        const res = await server.request({ method: 'POST', path: '/track', headers: FORM, body: `data=${b64([item, nonHex, noId])}` });
        assert.equal(res.text, '1');
      }
      const imported = await server.importJson([item, nonHex, noId]);
      assert.equal(imported.status, 200);
      const stop = await server.stop('SIGTERM');
      assert.deepEqual(stop, { code: 0, signal: null }, 'SIGTERM stops gracefully with exit 0');
      await server.start();
      const again = await server.request({ method: 'POST', path: '/track', headers: FORM, body: `data=${b64([item, nonHex, noId])}` });
      assert.equal(again.text, '1');
      const { map } = await exportByCase();
      for (const sent of [item, nonHex, noId]) {
        assert.equal((map.get(sent.properties.case_id) || []).length, 1, `${sent.properties.case_id} stored once`);
      }
      assert.equal(map.get(item.properties.case_id)[0].properties.$insert_id, item.properties.$insert_id);
    });

    it('re-importing an export neither re-pseudonymises nor duplicates', async () => {
      const before = await server.exportEvents();
      assert.ok(before.length > 0);
      const batch = before.slice(0, 2000);
      const res = await server.importJson(batch, { query: 'strict=1' });
      assert.equal(res.status, 200, res.text);
      const after = await server.exportEvents();
      assert.equal(after.length, before.length, 'no duplicates after re-import');
      const key = (row) => JSON.stringify([row.event, row.properties.$insert_id, row.properties.distinct_id, row.properties.time]);
      assert.deepEqual(after.map(key).sort(), before.map(key).sort(), 'same rows, same pseudonyms');
    });
  });

  describe('CORS', () => {
    const origin = 'http://app.example.test:8080';

    it('ingest routes echo the Origin with credentials', async () => {
      const res = await server.request({
        method: 'POST', path: '/track/?verbose=1', headers: { ...FORM, Origin: origin }, body: `data=${b64([event('cors')])}`,
      });
      assert.deepEqual(JSON.parse(res.text), { status: 1, error: null });
      assert.equal(res.headers['access-control-allow-origin'], origin);
      assert.equal(res.headers['access-control-allow-credentials'], 'true');
      const refusedRes = await server.request({
        method: 'POST', path: '/track/?verbose=1', headers: { ...FORM, Origin: origin }, body: 'data=%%%',
      });
      assert.equal(refusedRes.headers['access-control-allow-origin'], origin, 'CORS headers on failures too');
    });

    it('preflight OPTIONS answers 204', async () => {
      for (const route of ['/track/', '/engage/', '/groups/', '/import']) {
        const res = await server.request({
          method: 'OPTIONS', path: route,
          headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
        });
        assert.equal(res.status, 204, `OPTIONS ${route}`);
        assert.equal(res.headers['access-control-allow-origin'], origin, `OPTIONS ${route}: origin`);
        assert.equal(res.headers['access-control-allow-credentials'], 'true', `OPTIONS ${route}: credentials`);
        assert.match(res.headers['access-control-allow-methods'] || '', /POST/i, `OPTIONS ${route}: methods`);
        assert.match(res.headers['access-control-allow-headers'] || '', /content-type/i, `OPTIONS ${route}: headers`);
      }
    });

    it('the export API sends no credentialed CORS', async () => {
      const res = await server.request({
        path: '/api/2.0/export?from_date=2020-01-01&to_date=2020-01-02',
        headers: { ...server.authHeader(), Origin: origin },
      });
      assert.equal(res.status, 200);
      assert.equal(res.headers['access-control-allow-credentials'], undefined);
      assert.equal(res.headers['access-control-allow-origin'], undefined);
      const preflight = await server.request({
        method: 'OPTIONS', path: '/api/2.0/export',
        headers: { Origin: origin, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
      });
      assert.notEqual(preflight.headers['access-control-allow-credentials'], 'true');
      assert.notEqual(preflight.headers['access-control-allow-origin'], origin);
    });
  });

  describe('privacy', () => {
    it('IP addresses are never stored', async () => {
      const ips = ['203.0.113.77', '198.51.100.23', '192.0.2.200'];
      const items = [
        event('ip1', { ip: ips[0], $ip: ips[1] }),
        event('ip2', { ip: ips[1] }),
      ];
      let res = await server.request({
        method: 'POST', path: '/track?ip=1', headers: { ...FORM, 'X-Forwarded-For': ips[2] }, body: `data=${b64(items)}`,
      });
      assert.equal(res.text, '1');
      res = await server.importJson([event('ip3', { $ip: ips[2] })]);
      assert.equal(res.status, 200);
      const profile = { $token: token, $distinct_id: `raw-user-${run}`, $ip: ips[0], $set: { plan: 'pro' } };
      res = await server.request({ path: `/engage?data=${encodeURIComponent(b64(profile))}` });
      assert.equal(res.text, '1');
      const rows = await server.exportEvents();
      const ours = rows.filter((row) => ['ip1', 'ip2', 'ip3'].some((tag) => row.properties.case_id === `${run}-${tag}`));
      assert.equal(ours.length, 3);
      for (const row of ours) {
        assert.equal(row.properties.ip, undefined);
        assert.equal(row.properties.$ip, undefined);
      }
      const text = JSON.stringify(rows);
      for (const ip of ips) {
        assert.ok(!text.includes(ip), `${ip} in the export`);
      }
      // Let a group commit / flush land, then look at the bytes on disk.
      await server.restart();
      const hits = await grepTree(server.dataDir, ips);
      assert.deepEqual(hits, [], 'no IP address bytes in the data folder');
      const rawIdHits = await grepTree(server.dataDir, [`raw-user-${run}`]);
      assert.deepEqual(rawIdHits, [], 'no raw distinct id in the data folder');
    });

    it('the secret never appears in the server log', async () => {
      const items = [event('apikey-log')];
      const res = await server.request({
        method: 'POST', path: `/import?api_key=${encodeURIComponent(server.project.secret)}&verbose=1`,
        headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(items),
      });
      assert.equal(res.status, 200);
      const wrongSecret = `wrong-${hex32()}`;
      const wrong = await server.request({
        method: 'GET', path: `/import?api_key=${wrongSecret}&data=${encodeURIComponent(b64(items))}`,
      });
      assert.equal(wrong.status, 401);
      await server.request({ path: `/api/2.0/export?from_date=2020-01-01&to_date=2020-01-02&api_key=${encodeURIComponent(server.project.secret)}` });
      await server.stop('SIGTERM');
      const log = server.stderr;
      assert.ok(!log.includes(server.project.secret), 'project secret in the stderr log');
      assert.ok(!log.includes(encodeURIComponent(server.project.secret)), 'url-encoded project secret in the stderr log');
      assert.ok(!log.includes(wrongSecret), 'a presented (wrong) secret in the stderr log');
      await server.start();
    });
  });

  describe('projects (CLI) and isolation between projects', () => {
    it('project create works with the server stopped; list; events stay in their project', async () => {
      const stop = await server.stop('SIGINT');
      assert.deepEqual(stop, { code: 0, signal: null }, 'SIGINT stops gracefully with exit 0');
      const second = await createProject(server.dataDir, server.keysDir, 'second');
      assert.notEqual(second.id, server.project.id);
      assert.notEqual(second.token, server.project.token);
      assert.notEqual(second.secret, server.project.secret);
      await assert.rejects(createProject(server.dataDir, server.keysDir, 'second'), 'a duplicate project name is refused');
      const { stdout } = await runCli(['project', 'list', '--data', server.dataDir, '--keys', server.keysDir, '--json']);
      const trimmed = stdout.trim();
      const listed = trimmed.startsWith('[') ? JSON.parse(trimmed) : trimmed.split('\n').map((line) => JSON.parse(line));
      assert.deepEqual(listed.map((item) => [item.id, item.name]).sort(),
        [[server.project.id, server.project.name], [second.id, 'second']].sort());
      assert.ok(!stdout.includes(server.project.secret) && !stdout.includes(second.secret), 'list does not print secrets');
      await server.start();
      const mine = event('iso-first');
      const theirs = event('iso-second', { token: second.token });
      let res = await server.request({ method: 'POST', path: '/track', headers: FORM, body: `data=${b64([mine])}` });
      assert.equal(res.text, '1');
      res = await server.request({ method: 'POST', path: '/track', headers: FORM, body: `data=${b64([theirs])}` });
      assert.equal(res.text, '1');
      const firstRows = await server.exportEvents();
      const secondRows = await server.exportEvents({ secret: second.secret });
      const caseIds = (rows) => rows.map((row) => row.properties.case_id);
      assert.ok(caseIds(firstRows).includes(mine.properties.case_id));
      assert.ok(!caseIds(firstRows).includes(theirs.properties.case_id), 'project 2 event in project 1 export');
      assert.deepEqual(caseIds(secondRows), [theirs.properties.case_id], 'project 2 export holds only its event');
      assert.notEqual(secondRows[0].properties.distinct_id, firstRows.find((row) => row.properties.case_id === mine.properties.case_id).properties.distinct_id,
        'the same raw distinct id gets a different pseudonym in another project');
      const crossImport = await server.request({
        method: 'POST', path: `/import?project_id=${server.project.id}`,
        headers: { Authorization: basicAuth(`any-user:${second.secret}`), 'Content-Type': 'application/json' },
        body: JSON.stringify([event('iso-cross')]),
      });
      assert.ok([401, 403].includes(crossImport.status), `project 2 secret with project 1 id: ${crossImport.status}`);
    });

    it('import accepts events older than 5 days', async () => {
      const old = event('old-import', { time: nowSeconds() - 20 * 86400 });
      const res = await server.importJson([old], { query: 'strict=1' });
      assert.equal(res.status, 200, res.text);
      const rows = await server.exportEvents({ fromDate: isoDate(-21), toDate: isoDate(-19) });
      assert.deepEqual(rows.map((row) => row.properties.case_id), [old.properties.case_id]);
      assert.equal(rows[0].properties.time, old.properties.time);
    });
  });

  describe('metrics', () => {
    it('/metrics needs a project secret', async () => {
      assert.equal((await server.request({ path: '/metrics' })).status, 401);
      assert.equal((await server.request({ path: '/metrics', headers: server.authHeader('0'.repeat(64)) })).status, 401);
    });

    it('/metrics counts accepted events', async () => {
      const res = await server.request({ path: '/metrics', headers: server.authHeader() });
      assert.equal(res.status, 200);
      const match = res.text.match(/^minpanel_events_accepted_total(\{[^}]*\})?\s+([0-9.e+]+)/m);
      assert.ok(match, 'minpanel_events_accepted_total present');
      const before = res.text.split('\n').filter((line) => line.startsWith('minpanel_events_accepted_total'))
        .reduce((sum, line) => sum + Number(line.trim().split(/\s+/).pop()), 0);
      const ok = await server.request({ method: 'POST', path: '/track', headers: FORM, body: `data=${b64([event('metric1'), event('metric2')])}` });
      assert.equal(ok.text, '1');
      const after = (await server.request({ path: '/metrics', headers: server.authHeader() })).text.split('\n')
        .filter((line) => line.startsWith('minpanel_events_accepted_total'))
        .reduce((sum, line) => sum + Number(line.trim().split(/\s+/).pop()), 0);
      assert.equal(after - before, 2, 'accepted counter grew by the two events');
      assert.ok(!res.text.includes(server.project.secret));
    });
  });
});
