// The authorisation matrix on the real server (issue 6; docs/security.md):
// every route × every kind of credential — none, the public token, the
// project secret, a key of each scope, another project's secret, a server
// admin key, an expired, a revoked and a rotated-away key. A wrong or
// missing credential is 401; a right one without the scope is 403 with a
// message that names the missing scope and nothing else; an allowed one
// gets the route's own answer (2xx, or the 4xx its body earns). The matrix
// is one table, ROUTES: route (the server's `Route` enumerator), method,
// path, body and the scopes it needs. Rows that change state make a fresh
// target for each call (`prepare`: a key to rotate, a subject to erase, a
// report to delete, …) and check that an allowed call changed it and a
// refused one changed nothing (`changed`, `unchanged`). The first test
// reads `enum class Route` from src/server/routes.h and asks the server
// (a PATCH, answered 405 with Allow before any credential is looked at)
// which methods each route answers: a route or a method without a row
// fails it, unless NOT_IN_MATRIX says why the route takes no credential.
// Project deletion is in the matrix with a throwaway project (and its own
// credential of each kind) per call. Keys are made by `minpanel keys
// create` (taken on SIGHUP) and by POST /api/keys; every read leaves an
// audit record, which GET /api/audit returns and `minpanel audit verify`
// checks.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import {
  REPO_ROOT, createProject, grepTree, hex32, isoDate, nowSeconds, runCli, sleep, startServer,
} from './harness.mjs';

const SCOPES = ['ingest', 'query:aggregate', 'query:subjects', 'export', 'admin', 'audit:read', 'metrics'];

// The routes the matrix leaves out: they take no credential to authorise.
const NOT_IN_MATRIX = {
  kTrack: "Mixpanel's, the public project token in the payload (mixpanel_raw, mixpanel_sdk tests)",
  kEngage: "Mixpanel's, the public project token in the payload (profiles test)",
  kGroups: "Mixpanel's, the public project token in the payload (profiles test)",
  kPostHogCapture: "PostHog's, the public project token as api_key (posthog_sdk test)",
  kPostHogCaptureV1: "PostHog's, the public project token as api_key (posthog_sdk test)",
  kPostHogFlags: 'PostHog SDKs ask it with the public token; it answers no flags (posthog_sdk test)',
  kPostHogConfig: 'PostHog SDKs read it by the public token in the path (posthog_sdk test)',
  kPlausibleEvent: "Plausible's, the site's domain picks the project (plausible_raw test)",
  kSegmentMessage: "Segment's, the public token as the write key (segment_sdk test)",
  kSegmentBatch: "Segment's, the public token as the write key (segment_sdk test)",
  kHealth: 'public by design: says only whether the server is up (http test)',
  kRoot: 'the dashboard\'s static files, public; its data comes from the API (dashboard test)',
  kUnknown: 'not a route: 404',
};

describe('authorisation matrix', () => {
  let server;
  let other;
  const keys = {};
  const distinctId = `authz-user-${hex32()}`;
  // A subject id kept as a property, which the policy pseudonymises.
  const userId = `authz-account-${hex32()}`;
  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];

  const cliKey = async (args) => {
    const { stdout } = await runCli(['keys', 'create', ...args, ...dataArgs()]);
    return JSON.parse(stdout.trim());
  };

  // The state the write rows make and look at, through the server admin key
  // (never the credential under test).
  const adminRequest = (method, requestPath, body) => server.request({
    method, path: requestPath,
    headers: { ...server.authHeader(keys.admin_all.secret), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const inProject = (requestPath) => `${requestPath}${requestPath.includes('?') ? '&' : '?'}project_id=${server.project.id}`;
  // An access key of the project to act on, and whether it still opens a route.
  const targetKey = async () => {
    const res = await adminRequest('POST', '/api/keys', { name: `target-${hex32().slice(0, 8)}`, scopes: ['query:aggregate'], project_id: server.project.id });
    assert.equal(res.status, 201, res.text);
    return { key: JSON.parse(res.text) };
  };
  const opens = async (secret) => (await server.request({ path: '/api/projects', headers: server.authHeader(secret) })).status;
  // A subject of its own, with one event carrying a property of its own.
  const subject = async () => {
    const ctx = { id: `authz-subject-${hex32()}`, property: `authz_prop_${hex32().slice(0, 12)}` };
    const res = await server.importJson([{ event: 'authz_write', properties: { distinct_id: ctx.id, [ctx.property]: 'kept', time: nowSeconds(), $insert_id: hex32() } }]);
    assert.equal(res.status, 200, res.text);
    return ctx;
  };
  const rowsOf = (id) => server.exportEvents({ distinctId: id });
  const gdprTasks = () => fsp.readFile(path.join(server.dataDir, 'gdpr_tasks.json'), 'utf8').catch(() => '');
  const gdprCreate = async (kind, id) => {
    const res = await server.request({
      method: 'POST', path: `/api/app/data-${kind}/v3.0/?token=${server.project.token}`,
      headers: { Authorization: `Bearer ${keys.admin_all.secret}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ distinct_ids: [id], compliance_type: 'GDPR' }),
    });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text).results.task_id;
  };
  const gdprResult = (task) => server.request({
    path: `/api/app/data-retrievals/v3.0/${task}/result?token=${server.project.token}`,
    headers: { Authorization: `Bearer ${keys.admin_all.secret}` },
  });
  // One deletion task for the rows that read or cancel one, made once: each makes an erasure.
  let deletionTask;
  const theDeletionTask = async () => {
    deletionTask ??= await gdprCreate('deletions', `authz-deleted-${hex32()}`);
    return { task: deletionTask };
  };
  // A saved report or dashboard of the project, and what GET answers for it.
  const SAVED = {
    reports: (name) => ({ name, view: 'insights', state: { events: ['authz_event'] } }),
    dashboards: (name) => ({ name, reports: [] }),
  };
  const savedItem = async (kind) => {
    const res = await adminRequest('POST', inProject(`/api/${kind}`), SAVED[kind](`authz-${hex32().slice(0, 8)}`));
    assert.equal(res.status, 201, res.text);
    return { item: JSON.parse(res.text) };
  };
  const savedNow = (kind, id) => adminRequest('GET', inProject(`/api/${kind}/${id}`));
  const savedNames = async (kind) => {
    const res = await adminRequest('GET', inProject(`/api/${kind}`));
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text).map((item) => item.name);
  };

  // Each route: the server's enumerator (src/server/routes.h), how to call
  // it, the scopes it needs, and for a write how to see what it changed.
  // `status`: an allowed call's (200 unless said); `projectLess`: a server
  // admin key needs no project_id (else 400); `bearer`: Mixpanel's GDPR
  // shape, the credential as a Bearer and the project by its token.
  const projectId = () => server.project.id;
  const ROUTES = [
    { route: 'kQuery', name: 'POST /api/query (aggregate)', needs: ['query:aggregate'], method: 'POST', path: '/api/query',
      body: () => JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: ['authz_event'] }) },
    { route: 'kQuery', name: 'POST /api/query (by distinct_id)', needs: ['query:aggregate', 'query:subjects'], method: 'POST',
      path: '/api/query',
      // Filtered by the raw id and broken down by it: one group, labelled
      // with the pseudonym, never the raw id (docs/queries.md).
      body: () => JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now',
        events: [{ event: 'authz_event', filters: [{ property: 'distinct_id', op: 'eq', value: distinctId }] }],
        breakdown: 'distinct_id' }),
      check: (res) => {
        assert.ok(!res.text.includes(distinctId), res.text);
        const { series } = JSON.parse(res.text);
        assert.equal(series.length, 1, res.text);
        assert.match(series[0].breakdown[0], /^psn_[0-9a-f]{32}$/);
        assert.ok(series[0].total >= 1, res.text);
      } },
    { route: 'kQuery', name: 'POST /api/query (by user_id)', needs: ['query:aggregate', 'query:subjects'], method: 'POST',
      path: '/api/query',
      // A raw user_id matches the pseudonym the policy stored for it
      // (docs/queries.md, "Filtering by subject ids kept as properties").
      body: () => JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now',
        events: [{ event: 'authz_event', filters: [{ property: 'user_id', op: 'eq', value: userId }] }],
        breakdown: 'user_id' }),
      check: (res) => {
        assert.ok(!res.text.includes(userId), res.text);
        const { series } = JSON.parse(res.text);
        assert.equal(series.length, 1, res.text);
        assert.match(series[0].breakdown[0], /^psn_[0-9a-f]{32}$/);
        assert.ok(series[0].total >= 1, res.text);
      } },
    { route: 'kExport', name: 'GET /api/2.0/export', needs: ['export'], method: 'GET',
      path: `/api/2.0/export?from_date=${isoDate(-30)}&to_date=${isoDate(2)}`,
      check: (res) => assert.ok(res.text.includes('"authz_event"'), res.text.slice(0, 300)) },
    // The same parameters in a form body.
    { route: 'kExport', name: 'POST /api/2.0/export', needs: ['export'], method: 'POST', path: '/api/2.0/export',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: () => `from_date=${isoDate(-30)}&to_date=${isoDate(2)}`,
      check: (res) => assert.ok(res.text.includes('"authz_event"'), res.text.slice(0, 300)) },
    { route: 'kPolicy', name: 'GET /api/policy', needs: ['admin'], method: 'GET', path: '/api/policy' },
    { route: 'kPolicy', name: 'PUT /api/policy', needs: ['admin'], method: 'PUT', path: '/api/policy',
      headers: { 'Content-Type': 'text/plain' }, body: () => 'ip = "drop"\n' },
    { route: 'kPolicyVersions', name: 'GET /api/policy/versions', needs: ['admin'], method: 'GET', path: '/api/policy/versions' },
    // Version 1 exists by now: the PUT above stored one with each allowed call.
    { route: 'kPolicyVersion', name: 'GET /api/policy/versions/<N>', needs: ['admin'], method: 'GET', path: '/api/policy/versions/1' },
    { route: 'kPolicyPreview', name: 'POST /api/policy/preview', needs: ['admin'], method: 'POST', path: '/api/policy/preview',
      headers: { 'Content-Type': 'application/json' },
      body: () => JSON.stringify([{ event: 'e', properties: { distinct_id: 'generated-1', time: nowSeconds() } }]) },
    { route: 'kPolicyPreview', name: 'GET /api/policy/preview', needs: ['admin'], method: 'GET',
      path: `/api/policy/preview?data=${encodeURIComponent(JSON.stringify([{ event: 'e', properties: { distinct_id: 'generated-1', time: 1767225600 } }]))}` },
    { route: 'kMetrics', name: 'GET /metrics', needs: ['metrics'], method: 'GET', path: '/metrics', projectLess: true },
    { route: 'kKeys', name: 'GET /api/keys', needs: ['admin'], method: 'GET', path: '/api/keys', projectLess: true },
    // A key of the caller's project (a server admin key without project_id:
    // a server-wide one); admin is the one scope every allowed caller may grant.
    { route: 'kKeys', name: 'POST /api/keys', needs: ['admin'], method: 'POST', path: '/api/keys', status: 201, projectLess: true,
      headers: { 'Content-Type': 'application/json' },
      prepare: async () => ({ name: `created-${hex32().slice(0, 12)}` }),
      body: (ctx) => JSON.stringify({ name: ctx.name, scopes: ['admin'] }),
      changed: async (ctx, res) => {
        const created = JSON.parse(res.text);
        assert.equal(created.name, ctx.name);
        assert.equal(await opens(created.secret), 403, 'the new key is a key (admin only)');
        const listed = await adminRequest('GET', '/api/keys');
        assert.equal(JSON.parse(listed.text).filter((key) => key.name === ctx.name).length, 1);
      },
      unchanged: async (ctx) => {
        const listed = await adminRequest('GET', '/api/keys');
        assert.equal(listed.status, 200, listed.text);
        assert.deepEqual(JSON.parse(listed.text).filter((key) => key.name === ctx.name), [], 'a refused create made no key');
      } },
    { route: 'kKeyAction', name: 'POST /api/keys/<id>/rotate', needs: ['admin'], method: 'POST', projectLess: true,
      prepare: targetKey, path: (ctx) => `/api/keys/${ctx.key.id}/rotate`,
      changed: async (ctx, res) => {
        const rotated = JSON.parse(res.text);
        assert.equal(rotated.id, ctx.key.id);
        assert.equal(await opens(ctx.key.secret), 401, 'the old secret is no one now');
        assert.equal(await opens(rotated.secret), 200, 'the new secret opens what the old did');
      },
      unchanged: async (ctx) => assert.equal(await opens(ctx.key.secret), 200, 'a refused rotation left the secret in force') },
    { route: 'kKeyAction', name: 'POST /api/keys/<id>/revoke', needs: ['admin'], method: 'POST', projectLess: true,
      prepare: targetKey, path: (ctx) => `/api/keys/${ctx.key.id}/revoke`,
      changed: async (ctx) => assert.equal(await opens(ctx.key.secret), 401, 'a revoked key is no one'),
      unchanged: async (ctx) => assert.equal(await opens(ctx.key.secret), 200, 'a refused revocation left the key in force') },
    // Lifting an anomaly suspension (a no-op on a key in force); the key is
    // made in before().
    { route: 'kKeyAction', name: 'POST /api/keys/<id>/enable', needs: ['admin'], method: 'POST', projectLess: true,
      get path() { return `/api/keys/${keys.enable_target.id}/enable`; } },
    { route: 'kAudit', name: 'GET /api/audit', needs: ['audit:read'], method: 'GET', path: '/api/audit', projectLess: true },
    // The dashboard API (docs/formats/dashboard-api.md).
    { route: 'kProjects', name: 'GET /api/projects', needs: ['query:aggregate'], method: 'GET', path: '/api/projects', projectLess: true },
    { route: 'kNames', name: 'GET /api/names', needs: ['query:aggregate'], method: 'GET', path: '/api/names' },
    { route: 'kLiveEvents', name: 'GET /api/events/live', needs: ['export'], method: 'GET', path: '/api/events/live?limit=5' },
    { route: 'kAuditStatus', name: 'GET /api/audit/status', needs: ['audit:read'], method: 'GET', path: '/api/audit/status', projectLess: true },
    { route: 'kAlerts', name: 'GET /api/alerts', needs: ['audit:read'], method: 'GET', path: '/api/alerts', projectLess: true },
    { route: 'kDataMap', name: 'GET /api/datamap', needs: ['admin'], method: 'GET', path: '/api/datamap' },
    // Who could read one person's data (docs/incident.md), answered by the server.
    { route: 'kWhoCouldRead', name: 'POST /api/incident/who-could-read', needs: ['admin'], method: 'POST', path: '/api/incident/who-could-read',
      headers: { 'Content-Type': 'application/json' }, body: () => JSON.stringify({ distinct_id: distinctId }) },
    ...['reports', 'dashboards'].flatMap((kind) => {
      const route = kind === 'reports' ? 'kReport' : 'kDashboard';
      return [
        { route: `${route}s`, name: `GET /api/${kind}`, needs: ['query:aggregate'], method: 'GET', path: `/api/${kind}` },
        { route: `${route}s`, name: `POST /api/${kind}`, needs: ['query:aggregate'], method: 'POST', path: `/api/${kind}`, status: 201,
          headers: { 'Content-Type': 'application/json' },
          prepare: async () => ({ name: `authz-new-${hex32().slice(0, 8)}` }),
          body: (ctx) => JSON.stringify(SAVED[kind](ctx.name)),
          changed: async (ctx, res) => {
            assert.equal(JSON.parse(res.text).name, ctx.name);
            assert.equal((await savedNames(kind)).filter((name) => name === ctx.name).length, 1);
          },
          unchanged: async (ctx) => assert.ok(!(await savedNames(kind)).includes(ctx.name), 'a refused create saved nothing') },
        { route, name: `GET /api/${kind}/<id>`, needs: ['query:aggregate'], method: 'GET',
          prepare: () => savedItem(kind), path: (ctx) => `/api/${kind}/${ctx.item.id}`,
          check: (res) => assert.match(JSON.parse(res.text).name, /^authz-/) },
        { route, name: `PUT /api/${kind}/<id>`, needs: ['query:aggregate'], method: 'PUT',
          headers: { 'Content-Type': 'application/json' },
          prepare: () => savedItem(kind), path: (ctx) => `/api/${kind}/${ctx.item.id}`,
          body: (ctx) => JSON.stringify(SAVED[kind](`${ctx.item.name}-renamed`)),
          changed: async (ctx) => assert.equal(JSON.parse((await savedNow(kind, ctx.item.id)).text).name, `${ctx.item.name}-renamed`),
          unchanged: async (ctx) => {
            const now = await savedNow(kind, ctx.item.id);
            assert.equal(now.status, 200, now.text);
            assert.deepEqual(JSON.parse(now.text), ctx.item, 'a refused update changed nothing');
          } },
        { route, name: `DELETE /api/${kind}/<id>`, needs: ['query:aggregate'], method: 'DELETE',
          prepare: () => savedItem(kind), path: (ctx) => `/api/${kind}/${ctx.item.id}`,
          changed: async (ctx) => assert.equal((await savedNow(kind, ctx.item.id)).status, 404),
          unchanged: async (ctx) => assert.deepEqual(JSON.parse((await savedNow(kind, ctx.item.id)).text), ctx.item, 'a refused delete deleted nothing') },
      ];
    }),
    // One person's data (docs/privacy.md, "Erasure and access"): the most
    // personal read there is.
    { route: 'kAccessRequest', name: 'POST /api/access-request', needs: ['admin'], method: 'POST', path: '/api/access-request',
      headers: { 'Content-Type': 'application/json' }, body: () => JSON.stringify({ distinct_ids: [distinctId] }) },
    { route: 'kErase', name: 'POST /api/erase', needs: ['admin'], method: 'POST', path: '/api/erase',
      headers: { 'Content-Type': 'application/json' },
      prepare: subject, body: (ctx) => JSON.stringify({ distinct_ids: [ctx.id] }),
      changed: async (ctx, res) => {
        assert.equal(JSON.parse(res.text).subjects, 1, res.text);
        assert.deepEqual(await rowsOf(ctx.id), [], 'the subject is erased');
      },
      unchanged: async (ctx) => assert.equal((await rowsOf(ctx.id)).length, 1, 'a refused erasure erased nothing') },
    { route: 'kPropertyPurge', name: 'POST /api/properties/purge', needs: ['admin'], method: 'POST', path: '/api/properties/purge',
      headers: { 'Content-Type': 'application/json' },
      prepare: subject, body: (ctx) => JSON.stringify({ key: ctx.property }),
      changed: async (ctx) => {
        const rows = await rowsOf(ctx.id);
        assert.equal(rows.length, 1);
        assert.equal(rows[0].properties[ctx.property], undefined, 'the property is purged');
      },
      unchanged: async (ctx) => assert.equal((await rowsOf(ctx.id))[0]?.properties[ctx.property], 'kept', 'a refused purge purged nothing') },
    // Mixpanel's GDPR API shapes (docs/formats/mixpanel-gdpr.md).
    { route: 'kGdprDeletions', name: 'POST /api/app/data-deletions/v3.0', needs: ['admin'], method: 'POST', bearer: true, projectLess: true,
      headers: { 'Content-Type': 'application/json' },
      prepare: async () => ({ ...(await subject()), tasks: await gdprTasks() }),
      path: () => `/api/app/data-deletions/v3.0/?token=${server.project.token}`,
      body: (ctx) => JSON.stringify({ distinct_ids: [ctx.id], compliance_type: 'GDPR' }),
      changed: async (ctx, res) => {
        assert.match(JSON.parse(res.text).results.task_id, /\S/);
        assert.deepEqual(await rowsOf(ctx.id), [], 'the subject is erased');
      },
      unchanged: async (ctx) => {
        assert.equal((await rowsOf(ctx.id)).length, 1, 'a refused deletion erased nothing');
        assert.equal(await gdprTasks(), ctx.tasks, 'a refused deletion made no task');
      } },
    { route: 'kGdprDeletions', name: 'GET /api/app/data-deletions/v3.0/<task_id>', needs: ['admin'], method: 'GET', bearer: true, projectLess: true,
      prepare: theDeletionTask,
      path: (ctx) => `/api/app/data-deletions/v3.0/${ctx.task}?token=${server.project.token}`,
      check: (res) => assert.match(JSON.parse(res.text).results.status, /^(STARTED|SUCCESS)$/, res.text) },
    // A deletion is done before its task exists: a cancel is 400, allowed or not.
    { route: 'kGdprDeletions', name: 'DELETE /api/app/data-deletions/v3.0/<task_id>', needs: ['admin'], method: 'DELETE', bearer: true,
      projectLess: true, status: 400,
      prepare: theDeletionTask,
      path: (ctx) => `/api/app/data-deletions/v3.0/${ctx.task}?token=${server.project.token}`,
      check: (res) => assert.match(JSON.parse(res.text).error, /^task_id: the deletion is /, res.text) },
    { route: 'kGdprRetrievals', name: 'POST /api/app/data-retrievals/v3.0', needs: ['admin'], method: 'POST', bearer: true, projectLess: true,
      headers: { 'Content-Type': 'application/json' },
      prepare: async () => ({ tasks: await gdprTasks() }),
      path: () => `/api/app/data-retrievals/v3.0/?token=${server.project.token}`,
      body: () => JSON.stringify({ distinct_ids: [distinctId], compliance_type: 'GDPR' }),
      changed: async (_ctx, res) => {
        const result = await gdprResult(JSON.parse(res.text).results.task_id);
        assert.equal(result.status, 200, result.text);
        assert.ok(result.text.includes('authz_event'), result.text.slice(0, 300));
      },
      unchanged: async (ctx) => assert.equal(await gdprTasks(), ctx.tasks, 'a refused retrieval made no task') },
    { route: 'kGdprRetrievals', name: 'GET /api/app/data-retrievals/v3.0/<task_id>', needs: ['admin'], method: 'GET', bearer: true, projectLess: true,
      prepare: async () => ({ task: await gdprCreate('retrievals', distinctId) }),
      path: (ctx) => `/api/app/data-retrievals/v3.0/${ctx.task}?token=${server.project.token}`,
      check: (res) => assert.equal(JSON.parse(res.text).results.status, 'SUCCESS', res.text) },
    { route: 'kGdprRetrievals', name: 'GET /api/app/data-retrievals/v3.0/<task_id>/result', needs: ['admin'], method: 'GET', bearer: true,
      projectLess: true,
      prepare: async () => ({ task: await gdprCreate('retrievals', distinctId) }),
      path: (ctx) => `/api/app/data-retrievals/v3.0/${ctx.task}/result?token=${server.project.token}`,
      check: (res) => assert.ok(res.text.includes('authz_event'), res.text.slice(0, 300)) },
    // Cancelling a retrieval removes its result, the one copy of the data outside the store.
    { route: 'kGdprRetrievals', name: 'DELETE /api/app/data-retrievals/v3.0/<task_id>', needs: ['admin'], method: 'DELETE', bearer: true,
      projectLess: true,
      prepare: async () => ({ task: await gdprCreate('retrievals', distinctId) }),
      path: (ctx) => `/api/app/data-retrievals/v3.0/${ctx.task}?token=${server.project.token}`,
      changed: async (ctx) => assert.equal((await gdprResult(ctx.task)).status, 404, 'the result is removed'),
      unchanged: async (ctx) => assert.equal((await gdprResult(ctx.task)).status, 200, 'a refused cancel removed nothing') },
    // POST /api/projects/<id>/delete: its own block below (a throwaway
    // project per call); listed here for the route check only.
    { route: 'kProjectAction', name: 'POST /api/projects/<id>/delete', method: 'POST', path: '/api/projects/1/delete', ownBlock: true },
    { route: 'kImport', name: 'POST /import', needs: ['ingest'], method: 'POST', path: '/import?verbose=1', tokenIsUnauthenticated: true,
      headers: { 'Content-Type': 'application/json' },
      body: () => JSON.stringify([{ event: 'authz_event', properties: { distinct_id: distinctId, user_id: userId, time: nowSeconds(), $insert_id: hex32() } }]) },
    // Mixpanel's /import takes data= in the query of a GET too.
    { route: 'kImport', name: 'GET /import', needs: ['ingest'], method: 'GET', tokenIsUnauthenticated: true,
      get path() {
        return `/import?verbose=1&data=${encodeURIComponent(JSON.stringify([{ event: 'authz_get_import', properties: { distinct_id: distinctId, time: nowSeconds(), $insert_id: hex32() } }]))}`;
      } },
  ];
  const IMPORT_ROW = ROUTES.find((route) => route.name === 'POST /import');

  // One call of a row: a fresh target first when the row needs one; the
  // response carries it (`ctx`) to the checks.
  const call = async (route, secret, { projectIdParam } = {}) => {
    const ctx = route.prepare ? await route.prepare() : {};
    const routePath = typeof route.path === 'function' ? route.path(ctx) : route.path;
    const separator = routePath.includes('?') ? '&' : '?';
    const requestPath = projectIdParam ? `${routePath}${separator}project_id=${projectIdParam}` : routePath;
    const headers = { ...(route.headers || {}) };
    if (secret !== undefined) {
      Object.assign(headers, route.bearer ? { Authorization: `Bearer ${secret}` } : server.authHeader(secret));
    }
    const res = await server.request({ method: route.method, path: requestPath, headers, body: route.body ? route.body(ctx) : undefined });
    res.ctx = ctx;
    return res;
  };

  before(async () => {
    server = await startServer({ projectName: 'authz-a' });
    other = await createProject(server.dataDir, server.keysDir, 'authz-b');
    for (const scope of SCOPES) {
      keys[scope] = await cliKey(['--name', `only-${scope}`, '--project', 'authz-a', '--scope', scope]);
    }
    keys.admin_all = await cliKey(['--name', 'server-admin', '--admin']);
    keys.subjects_and_aggregate = await cliKey(['--name', 'analyst', '--project', 'authz-a',
      '--scope', 'query:aggregate', '--scope', 'query:subjects']);
    await server.reload();
    // Through the API: an expiring key, one to revoke and one to rotate.
    const create = async (body) => {
      const res = await server.request({
        method: 'POST', path: '/api/keys', headers: { ...server.authHeader(keys.admin_all.secret), 'Content-Type': 'application/json' },
        body: JSON.stringify({ project_id: server.project.id, ...body }),
      });
      assert.equal(res.status, 201, res.text);
      return JSON.parse(res.text);
    };
    keys.expired = await create({ name: 'short-lived', scopes: SCOPES, expires_ms: Date.now() + 1500 });
    keys.revoked = await create({ name: 'to-revoke', scopes: SCOPES });
    keys.rotated = await create({ name: 'to-rotate', scopes: SCOPES });
    keys.enable_target = await create({ name: 'to-enable', scopes: ['query:aggregate'] });
    let res = await server.request({ method: 'POST', path: `/api/keys/${keys.revoked.id}/revoke`, headers: server.authHeader(keys.admin_all.secret) });
    assert.equal(res.status, 200, res.text);
    res = await server.request({ method: 'POST', path: `/api/keys/${keys.rotated.id}/rotate`, headers: server.authHeader(keys.admin_all.secret) });
    assert.equal(res.status, 200, res.text);
    keys.rotated_new = JSON.parse(res.text);
    assert.equal(keys.rotated_new.id, keys.rotated.id);
    assert.notEqual(keys.rotated_new.secret, keys.rotated.secret);
    await sleep(1600);
    // An event to read back.
    res = await call(IMPORT_ROW, server.project.secret);
    assert.equal(res.status, 200, res.text);
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  const expectDenied = (res, status, scope, what) => {
    assert.equal(res.status, status, `${what}: ${res.text}`);
    const { error } = JSON.parse(res.text);
    if (scope) {
      assert.ok(error.includes(`'${scope}'`), `${what}: the message names '${scope}': ${error}`);
    }
    for (const secretThing of [server.project.secret, server.project.token, other.secret, 'authz-a', 'authz-b', distinctId, userId]) {
      assert.ok(!error.includes(secretThing), `${what}: the message reveals nothing else: ${error}`);
    }
  };

  // An allowed call: the row's status and answer, and its change made.
  const expectAllowed = async (route, res) => {
    assert.equal(res.status, route.status ?? 200, res.text);
    route.check?.(res);
    await route.changed?.(res.ctx, res);
  };
  // A refused call: the status and message, and nothing changed.
  const expectRefused = async (route, res, status, scope, what) => {
    expectDenied(res, status, scope, what);
    await route.unchanged?.(res.ctx);
  };

  // The routes the server registers (`enum class Route`), and the methods
  // each answers (a PATCH, which no route takes, is answered 405 with Allow
  // and the route's label before any credential is looked at).
  it('every route the server registers has a row for each method it answers', async () => {
    const header = await fsp.readFile(path.join(REPO_ROOT, 'src', 'server', 'routes.h'), 'utf8');
    const enumBody = header.match(/enum class Route \{([^}]*)\}/)[1].replace(/\/\/.*$/gm, '');
    const registered = [...enumBody.matchAll(/\b(k[A-Za-z0-9]+)\b/g)].map((match) => match[1]);
    assert.ok(registered.length >= 40, `the enumerators of Route: ${registered}`);
    for (const name of Object.keys(NOT_IN_MATRIX)) {
      assert.ok(registered.includes(name), `NOT_IN_MATRIX names ${name}, which is no route`);
    }
    const labels = new Map();  // label → enumerator
    for (const name of registered.filter((route) => !(route in NOT_IN_MATRIX))) {
      const rows = ROUTES.filter((route) => route.route === name);
      assert.ok(rows.length > 0, `route ${name} has no row in the matrix (nor a reason in NOT_IN_MATRIX)`);
      let allowed = null;
      for (const row of rows) {
        const probePath = typeof row.path === 'function' ? row.path({ task: 'probe', key: { id: 'probe' }, item: { id: 1 } }) : row.path;
        const res = await server.request({ method: 'PATCH', path: probePath });
        assert.equal(res.status, 405, `${row.name}: ${res.text}`);
        const label = JSON.parse(res.text).error.match(/^method: PATCH is not allowed on (\S+)$/)[1];
        assert.equal(labels.get(label) ?? name, name, `${row.name} is ${labels.get(label)}'s path, not ${name}'s`);
        labels.set(label, name);
        const methods = res.headers.allow.split(', ').filter((method) => method !== 'OPTIONS').sort();
        assert.deepEqual(methods, allowed ?? methods, `${row.name}: the methods of ${name}`);
        allowed = methods;
      }
      assert.deepEqual([...new Set(rows.map((row) => row.method))].sort(), allowed,
        `${name}: the methods with rows, and those the server answers`);
    }
    assert.equal(new Set(labels.values()).size, labels.size, 'one label a route');
  });

  for (const route of ROUTES.filter((row) => !row.ownBlock)) {
    describe(route.name, () => {
      it('no credential: 401', async () => {
        await expectRefused(route, await call(route, undefined), 401, null, 'none');
      });
      it('an unknown key and an unknown secret: 401', async () => {
        await expectRefused(route, await call(route, `mpk_0123456789abcdef_${'0'.repeat(64)}`), 401, null, 'unknown key');
        await expectRefused(route, await call(route, '0'.repeat(64)), 401, null, 'unknown secret');
      });
      it('the public token: ingest only', async () => {
        const res = await call(route, server.project.token);
        if (route.tokenIsUnauthenticated) {
          await expectRefused(route, res, 401, null, 'token on /import');
        } else {
          await expectRefused(route, res, 403, route.needs.find((scope) => scope !== 'ingest'), 'token');
        }
      });
      it('the project secret: every scope of its project', async () => {
        await expectAllowed(route, await call(route, server.project.secret));
      });
      for (const scope of SCOPES) {
        it(`a key with only ${scope}`, async () => {
          const res = await call(route, keys[scope].secret);
          const missing = route.needs.find((needed) => needed !== scope);
          if (missing === undefined) {
            await expectAllowed(route, res);
          } else {
            await expectRefused(route, res, 403, missing, `key ${scope}`);
          }
        });
      }
      it('a key with query:aggregate and query:subjects', async () => {
        const res = await call(route, keys.subjects_and_aggregate.secret);
        const missing = route.needs.find((needed) => needed !== 'query:aggregate' && needed !== 'query:subjects');
        if (missing === undefined) {
          await expectAllowed(route, res);
        } else {
          await expectRefused(route, res, 403, missing, 'analyst key');
        }
      });
      it("another project's secret naming this project: 403", async () => {
        await expectRefused(route, await call(route, other.secret, { projectIdParam: projectId() }), 403, null, 'other project');
      });
      it('a server admin key with project_id: allowed; without it, where a project is needed: 400', async () => {
        await expectAllowed(route, await call(route, keys.admin_all.secret, { projectIdParam: projectId() }));
        const bare = await call(route, keys.admin_all.secret);
        if (route.projectLess) {
          await expectAllowed(route, bare);
        } else {
          assert.equal(bare.status, 400, bare.text);
          assert.match(JSON.parse(bare.text).error, /project_id/);
          await route.unchanged?.(bare.ctx);
        }
      });
      it('an expired, a revoked and a rotated-away key: 401', async () => {
        await expectRefused(route, await call(route, keys.expired.secret), 401, null, 'expired');
        await expectRefused(route, await call(route, keys.revoked.secret), 401, null, 'revoked');
        await expectRefused(route, await call(route, keys.rotated.secret), 401, null, 'rotated away');
        await expectAllowed(route, await call(route, keys.rotated_new.secret));
      });
    });
  }

  // POST /api/projects/<id>/delete: every credential kind of the matrix,
  // each against a throwaway project of its own (made for that call, with
  // that kind of credential of its own), so that every allowed call really
  // deletes one and every refused one is seen to have deleted nothing.
  describe('POST /api/projects/<id>/delete', () => {
    const KINDS = [
      { name: 'no credential', status: 401, credential: () => undefined },
      { name: 'an unknown key', status: 401, credential: () => `mpk_0123456789abcdef_${'0'.repeat(64)}` },
      { name: 'an unknown secret', status: 401, credential: () => '0'.repeat(64) },
      { name: 'the public token', status: 403, credential: (target) => target.project.token },
      { name: 'the project secret', status: 200, credential: (target) => target.project.secret },
      ...SCOPES.map((scope) => ({
        name: `a key with only ${scope}`, status: scope === 'admin' ? 200 : 403, scopes: [scope],
        credential: (target) => target.key.secret,
      })),
      { name: 'a key with query:aggregate and query:subjects', status: 403, scopes: ['query:aggregate', 'query:subjects'],
        credential: (target) => target.key.secret },
      { name: "another project's secret naming this project", status: 403, credential: () => other.secret, projectIdParam: true },
      { name: 'a server admin key with project_id', status: 200, credential: () => keys.admin_all.secret, projectIdParam: true },
      { name: 'a server admin key without project_id (the path names the project)', status: 200,
        credential: () => keys.admin_all.secret },
      { name: 'an expired key', status: 401, scopes: SCOPES, expires: true, credential: (target) => target.key.secret },
      { name: 'a revoked key', status: 401, scopes: SCOPES, revoke: true, credential: (target) => target.key.secret },
      { name: 'a rotated-away key', status: 401, scopes: SCOPES, rotate: true, credential: (target) => target.key.secret },
      { name: 'a rotated key\'s new secret', status: 200, scopes: SCOPES, rotate: true, credential: (target) => target.rotated.secret },
    ];
    const targets = new Map();  // kind name → {project, key, rotated}
    const adminCall = (method, requestPath, body) => server.request({
      method, path: requestPath, headers: { ...server.authHeader(keys.admin_all.secret), 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const listedIds = async () => {
      const res = await adminCall('GET', '/api/projects');
      assert.equal(res.status, 200, res.text);
      return new Set(JSON.parse(res.text).map((project) => project.id));
    };

    before(async () => {
      for (const [kindIdx, kind] of KINDS.entries()) {
        targets.set(kind.name, { project: await createProject(server.dataDir, server.keysDir, `authz-doomed-${kindIdx}`) });
      }
      await server.reload();
      for (const [kindIdx, kind] of KINDS.entries()) {
        if (!kind.scopes) {
          continue;
        }
        const target = targets.get(kind.name);
        const created = await adminCall('POST', '/api/keys', {
          name: `doomed-${kindIdx}`, scopes: kind.scopes, project_id: target.project.id,
          ...(kind.expires ? { expires_ms: Date.now() + 1500 } : {}),
        });
        assert.equal(created.status, 201, created.text);
        target.key = JSON.parse(created.text);
        if (kind.revoke || kind.rotate) {
          const changed = await adminCall('POST', `/api/keys/${target.key.id}/${kind.revoke ? 'revoke' : 'rotate'}`);
          assert.equal(changed.status, 200, changed.text);
          target.rotated = JSON.parse(changed.text);
        }
      }
      await sleep(1600);
    });

    for (const kind of KINDS) {
      it(`${kind.name}: ${kind.status}`, async () => {
        const { project } = targets.get(kind.name);
        const params = new URLSearchParams({ confirm: project.name });
        if (kind.projectIdParam) {
          params.set('project_id', String(project.id));
        }
        const secret = kind.credential(targets.get(kind.name));
        const res = await server.request({
          method: 'POST', path: `/api/projects/${project.id}/delete?${params}`,
          headers: secret === undefined ? {} : server.authHeader(secret),
        });
        if (kind.status === 200) {
          assert.equal(res.status, 200, res.text);
          assert.equal(JSON.parse(res.text).deleted.id, project.id);
          assert.ok(!(await listedIds()).has(project.id), 'the project is gone');
          const secretAfter = await server.request({ path: '/api/policy', headers: server.authHeader(project.secret) });
          assert.equal(secretAfter.status, 401, 'its secret is no one now');
        } else {
          expectDenied(res, kind.status, kind.status === 403 && kind.name !== "another project's secret naming this project" ? 'admin' : null, kind.name);
          assert.ok(!JSON.parse(res.text).error.includes(project.name), 'the refusal does not name the project');
          assert.ok((await listedIds()).has(project.id), 'a refused call deletes nothing');
        }
      });
    }

    it('each deletion, and only those, is in the audit log with its caller', async () => {
      const res = await adminCall('GET', '/api/audit?act=project.delete&limit=1000');
      assert.equal(res.status, 200, res.text);
      const records = JSON.parse(res.text);
      const deleted = KINDS.filter((kind) => kind.status === 200).map((kind) => String(targets.get(kind.name).project.id));
      const closing = records.filter((record) => record.act === 'project.delete').map((record) => record.target);
      assert.deepEqual(closing.sort(), [...deleted].sort());
      const starts = records.filter((record) => record.act === 'project.delete.start').map((record) => record.target);
      assert.deepEqual(starts.sort(), [...deleted].sort());
      const bySecret = targets.get('the project secret').project;
      assert.equal(records.find((record) => record.target === String(bySecret.id)).key, `secret:${bySecret.id}`);
      const byKey = targets.get('a key with only admin').key;
      assert.equal(records.find((record) => record.key === byKey.id).act, 'project.delete.start');
    });
  });

  it('a key limited to events reads only those', async () => {
    const res = await server.request({
      method: 'POST', path: '/api/keys', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'events-only', scopes: ['query:aggregate', 'export'], events: ['authz_event'] }),
    });
    assert.equal(res.status, 201, res.text);
    const limited = JSON.parse(res.text);
    assert.equal(limited.project_id, server.project.id, 'a project secret makes keys of its project');
    const query = (events) => server.request({
      method: 'POST', path: '/api/query', headers: server.authHeader(limited.secret),
      body: JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events }),
    });
    assert.equal((await query(['authz_event'])).status, 200);
    expectDenied(await query(['other_event']), 403, null, 'other event');
    const exported = await server.exportEvents({ secret: limited.secret, event: ['other_event'] }).catch((error) => error);
    assert.ok(exported instanceof Error, 'an export of another event is refused');
  });

  it('a key limited to properties reads only those, and cannot export whole events', async () => {
    const res = await server.request({
      method: 'POST', path: '/api/keys', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'properties-only', scopes: ['query:aggregate', 'export'], properties: ['plan'] }),
    });
    assert.equal(res.status, 201, res.text);
    const limited = JSON.parse(res.text);
    const query = (property) => server.request({
      method: 'POST', path: '/api/query', headers: server.authHeader(limited.secret),
      body: JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: ['authz_event'], breakdown: [property] }),
    });
    const allowed = await query('plan');
    assert.equal(allowed.status, 200, allowed.text);
    const denied = await query('mp_lib');
    expectDenied(denied, 403, null, 'another property');
    assert.match(JSON.parse(denied.text).error, /properties: this key may not read the property 'mp_lib'/);
    const exported = await server.request({
      path: `/api/2.0/export?from_date=${isoDate(-30)}&to_date=${isoDate(2)}`, headers: server.authHeader(limited.secret),
    });
    expectDenied(exported, 403, null, 'an export of whole events');
    assert.match(JSON.parse(exported.text).error, /properties: this key is limited to named properties/);
  });

  it('a key cannot grant scopes it lacks, nor keys of another project', async () => {
    const res = await server.request({
      method: 'POST', path: '/api/keys', headers: { ...server.authHeader(keys.admin.secret), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'escalate', scopes: ['export'] }),
    });
    expectDenied(res, 403, null, 'escalation');
    assert.match(JSON.parse(res.text).error, /export/);
    const cross = await server.request({
      method: 'POST', path: '/api/keys', headers: { ...server.authHeader(keys.admin.secret), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'cross', scopes: ['admin'], project_id: other.id }),
    });
    assert.equal(cross.status, 403, cross.text);
  });

  it('every read and admin act is in the audit log, without personal data, and the chain verifies', async () => {
    const res = await server.request({ path: '/api/audit?limit=10000', headers: server.authHeader(keys.admin_all.secret) });
    assert.equal(res.status, 200, res.text);
    const records = JSON.parse(res.text);
    const acts = new Set(records.map((record) => record.act));
    for (const act of ['query', 'export.start', 'export', 'policy.read', 'policy.put', 'policy.preview',
      'key.create', 'key.revoke', 'key.rotate', 'key.list', 'audit.read']) {
      assert.ok(acts.has(act), `an audit record of ${act}: ${[...acts]}`);
    }
    // Each CLI-made key twice: by the command (route cli, through the log's
    // queue while the server runs) and by the server when its SIGHUP took it up.
    const cliCreated = (route) => records.filter((record) => record.act === 'key.create' && record.key === 'local' && record.route === route);
    assert.equal(cliCreated('cli').length, SCOPES.length + 2, 'the CLI-made keys, recorded by the command');
    assert.equal(cliCreated('reload').length, SCOPES.length + 2, 'the CLI-made keys, recorded on SIGHUP');
    assert.deepEqual(cliCreated('cli').map((record) => record.target).sort(), cliCreated('reload').map((record) => record.target).sort());
    const exports = records.filter((record) => record.act === 'export' && record.rows > 0);
    assert.ok(exports.length > 0);
    assert.equal(exports[0].subjects, 1);
    assert.ok(exports[0].subjects_file.startsWith('subjects/'));
    assert.ok(exports[0].events.includes('authz_event'));
    const subjectQueries = records.filter((record) => record.act === 'query' && record.properties.includes('distinct_id'));
    assert.ok(subjectQueries.length > 0);
    assert.ok(subjectQueries.every((record) => record.key !== keys['query:aggregate'].id),
      'the refused subject query of an aggregate-only key was not answered');
    // A project's key sees its project's records only.
    const mine = await server.request({ path: '/api/audit?limit=10000', headers: server.authHeader(keys['audit:read'].secret) });
    assert.equal(mine.status, 200, mine.text);
    assert.ok(JSON.parse(mine.text).every((record) => record.projects.includes(server.project.id)));
    const hits = await grepTree(`${server.dataDir}/audit`, [distinctId, userId]);
    assert.deepEqual(hits, [], 'no raw distinct id or user_id in the audit folder');
    await server.stop();
    const { stdout } = await runCli(['audit', 'verify', ...dataArgs()]);
    assert.match(stdout, /^ok: \d+ records/);
  });
});
