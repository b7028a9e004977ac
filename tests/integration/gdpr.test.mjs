// Mixpanel's GDPR API shapes on the real server (docs/formats/mixpanel-gdpr.md):
// the requests as Mixpanel's documentation shows them — POST
// /api/app/data-deletions/v3.0/?token=<project token> with
// `Authorization: Bearer <token>` and {"distinct_ids": [...],
// "compliance_type": "GDPR"}, GET .../<task_id> for the status, DELETE to
// cancel, and the same under data-retrievals — with the bearer an
// admin-scoped minpanel key. Tasks outlive a SIGKILL and a restart.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, hex32, nowSeconds } from './harness.mjs';

describe('Mixpanel GDPR API v3.0', () => {
  let server;
  let adminKey;
  let exportKey;
  const run = hex32().slice(0, 8);
  const people = Array.from({ length: 5 }, (_, index) => `gdpr-user-${run}-${index}`);
  const others = Array.from({ length: 5 }, (_, index) => `gdpr-other-${run}-${index}`);

  const gdpr = (method, route, { body, bearer = adminKey.secret, token = server.project.token } = {}) => {
    const headers = { 'Content-Type': 'application/json' };
    if (bearer !== null) {
      headers.Authorization = `Bearer ${bearer}`;
    }
    const query = token === null ? '' : `?token=${encodeURIComponent(token)}`;
    return server.request({ method, path: `/api/app/${route}${query}`, headers, body: body === undefined ? undefined : JSON.stringify(body) })
      .then((res) => ({ status: res.status, body: JSON.parse(res.text) }));
  };

  const createKey = async (name, scopes) => {
    const res = await server.request({
      method: 'POST', path: '/api/keys', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name, scopes, project_id: server.project.id }),
    });
    assert.equal(res.status, 201, res.text);
    return JSON.parse(res.text);
  };

  before(async () => {
    server = await startServer({ projectName: 'gdpr' });
    adminKey = await createKey('gdpr-tooling', ['admin']);
    exportKey = await createKey('analyst', ['export']);
    const events = [...people, ...others].flatMap((person) => Array.from({ length: 4 }, (_, index) => ({
      event: 'Viewed', properties: { distinct_id: person, $insert_id: hex32(), time: nowSeconds() - 600 + index, n: index },
    })));
    const res = await server.importJson(events);
    assert.equal(res.status, 200, res.text);
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('a retrieval: task, status SUCCESS with a download_url, the data as stored', async () => {
    const created = await gdpr('POST', 'data-retrievals/v3.0/', { body: { distinct_ids: people.slice(0, 2), compliance_type: 'GDPR' } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    assert.equal(created.body.status, 'ok');
    const taskId = created.body.results.task_id;
    assert.match(taskId, /^[0-9a-f]{32}$/);
    const status = await gdpr('GET', `data-retrievals/v3.0/${taskId}`);
    assert.equal(status.body.status, 'ok');
    assert.equal(status.body.results.status, 'SUCCESS');
    assert.match(status.body.results.download_url, new RegExp(`^/api/app/data-retrievals/v3.0/${taskId}/result\\?token=`));
    const url = status.body.results.download_url;
    const download = await server.request({ path: url, headers: { Authorization: `Bearer ${adminKey.secret}` } });
    assert.equal(download.status, 200);
    const document = JSON.parse(download.text);
    assert.equal(document.events.length, 8);
    assert.equal(document.subjects.length, 2);
    // CCPA with a disclosure type other than Data is refused, naming it.
    const ccpa = await gdpr('POST', 'data-retrievals/v3.0/', { body: { distinct_ids: [people[0]], compliance_type: 'CCPA', disclosure_type: 'Categories' } });
    assert.equal(ccpa.status, 400);
    assert.equal(ccpa.body.status, 'error');
    assert.match(ccpa.body.error, /disclosure_type/);
    // Cancelling a retrieval removes its result.
    const cancelled = await gdpr('DELETE', `data-retrievals/v3.0/${taskId}`);
    assert.equal(cancelled.status, 200);
    assert.equal((await gdpr('GET', `data-retrievals/v3.0/${taskId}`)).body.results.status, 'REVOKED');
    const gone = await server.request({ path: url, headers: { Authorization: `Bearer ${adminKey.secret}` } });
    assert.equal(gone.status, 404);
  });

  it('a deletion: SUCCESS, the people gone from export, the others kept; not cancellable', async () => {
    const created = await gdpr('POST', 'data-deletions/v3.0/', { body: { distinct_ids: people, compliance_type: 'CCPA' } });
    assert.equal(created.status, 200, JSON.stringify(created.body));
    const taskId = created.body.results.task_id;
    const status = await gdpr('GET', `data-deletions/v3.0/${taskId}`);
    assert.equal(status.body.results.status, 'SUCCESS');
    assert.equal(status.body.results.download_url, undefined);
    const rows = await server.exportEvents();
    assert.equal(rows.length, others.length * 4, 'only the others remain');
    const cancel = await gdpr('DELETE', `data-deletions/v3.0/${taskId}`);
    assert.equal(cancel.status, 400);
    assert.match(cancel.body.error, /cancelled only before it starts/);

    // Tasks outlive kill -9.
    await server.stop('SIGKILL');
    await server.start();
    const again = await gdpr('GET', `data-deletions/v3.0/${taskId}`);
    assert.equal(again.body.results.status, 'SUCCESS');
    assert.equal((await server.exportEvents()).length, others.length * 4);
  });

  it('authentication as Mixpanel asks for it, mapped to minpanel keys', async () => {
    const body = { distinct_ids: [others[0]], compliance_type: 'GDPR' };
    let res = await gdpr('POST', 'data-deletions/v3.0/', { body, bearer: null });
    assert.equal(res.status, 401);
    assert.match(res.body.error, /Bearer/);
    res = await gdpr('POST', 'data-deletions/v3.0/', { body, bearer: exportKey.secret });
    assert.equal(res.status, 403, 'a key without the admin scope');
    res = await gdpr('POST', 'data-deletions/v3.0/', { body, token: null });
    assert.equal(res.status, 400);
    assert.match(res.body.error, /token/);
    res = await gdpr('POST', 'data-deletions/v3.0/', { body, token: 'not-a-token' });
    assert.equal(res.status, 404);
    res = await gdpr('GET', `data-deletions/v3.0/${hex32()}`);
    assert.equal(res.status, 404);
    res = await gdpr('POST', 'data-deletions/v3.0/', { body: { distinct_ids: Array.from({ length: 2001 }, (_, index) => `x${index}`) } });
    assert.equal(res.status, 413);
    assert.match(res.body.error, /kGdprDistinctIdsMax/);
    assert.equal((await server.exportEvents()).length, others.length * 4, 'nothing erased by a refused request');
  });
});
