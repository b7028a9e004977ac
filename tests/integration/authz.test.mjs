// The authorisation matrix on the real server (issue 6; docs/security.md):
// every read and admin route × every kind of credential — none, the public
// token, the project secret, a key of each scope, another project's secret,
// a server admin key, an expired, a revoked and a rotated-away key. A wrong
// or missing credential is 401; a right one without the scope is 403 with a
// message that names the missing scope and nothing else. Project deletion
// is in the matrix with a throwaway project (and its own credential of each
// kind) per call. Keys are made by
// `minpanel keys create` (taken on SIGHUP) and by POST /api/keys; every
// read leaves an audit record, which GET /api/audit returns and `minpanel
// audit verify` checks.
// Not in the matrix yet, because each allowed call changes state: POST
// /api/keys and /api/keys/<id>/rotate|revoke (here only "a key cannot
// grant scopes it lacks"), POST /api/erase and /api/properties/purge (the
// token only, erasure and property_purge tests), Mixpanel's GDPR routes
// (no credential and one non-admin key, gdpr test), and the POST, PUT and
// DELETE of /api/reports and /api/dashboards.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import {
  createProject, grepTree, hex32, isoDate, nowSeconds, runCli, sleep, startServer,
} from './harness.mjs';

const SCOPES = ['ingest', 'query:aggregate', 'query:subjects', 'export', 'admin', 'audit:read', 'metrics'];

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

  // Each route: how to call it, and the scopes it needs.
  const projectId = () => server.project.id;
  const ROUTES = [
    { name: 'POST /api/query (aggregate)', needs: ['query:aggregate'], method: 'POST', path: '/api/query',
      body: () => JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: ['authz_event'] }) },
    { name: 'POST /api/query (by distinct_id)', needs: ['query:aggregate', 'query:subjects'], method: 'POST',
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
    { name: 'POST /api/query (by user_id)', needs: ['query:aggregate', 'query:subjects'], method: 'POST',
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
    { name: 'GET /api/2.0/export', needs: ['export'], method: 'GET',
      path: `/api/2.0/export?from_date=${isoDate(-30)}&to_date=${isoDate(2)}` },
    { name: 'GET /api/policy', needs: ['admin'], method: 'GET', path: '/api/policy' },
    { name: 'PUT /api/policy', needs: ['admin'], method: 'PUT', path: '/api/policy',
      headers: { 'Content-Type': 'text/plain' }, body: () => 'ip = "drop"\n' },
    { name: 'GET /api/policy/versions', needs: ['admin'], method: 'GET', path: '/api/policy/versions' },
    // Version 1 exists by now: the PUT above stored one with each allowed call.
    { name: 'GET /api/policy/versions/<N>', needs: ['admin'], method: 'GET', path: '/api/policy/versions/1' },
    { name: 'POST /api/policy/preview', needs: ['admin'], method: 'POST', path: '/api/policy/preview',
      headers: { 'Content-Type': 'application/json' },
      body: () => JSON.stringify([{ event: 'e', properties: { distinct_id: 'generated-1', time: nowSeconds() } }]) },
    { name: 'GET /metrics', needs: ['metrics'], method: 'GET', path: '/metrics' },
    { name: 'GET /api/keys', needs: ['admin'], method: 'GET', path: '/api/keys' },
    // Lifting an anomaly suspension (a no-op on a key in force); the key is
    // made in before().
    { name: 'POST /api/keys/<id>/enable', needs: ['admin'], method: 'POST', projectLess: true,
      get path() { return `/api/keys/${keys.enable_target.id}/enable`; } },
    { name: 'GET /api/audit', needs: ['audit:read'], method: 'GET', path: '/api/audit' },
    // The dashboard API (docs/formats/dashboard-api.md).
    { name: 'GET /api/projects', needs: ['query:aggregate'], method: 'GET', path: '/api/projects' },
    { name: 'GET /api/names', needs: ['query:aggregate'], method: 'GET', path: '/api/names' },
    { name: 'GET /api/events/live', needs: ['export'], method: 'GET', path: '/api/events/live?limit=5' },
    { name: 'GET /api/audit/status', needs: ['audit:read'], method: 'GET', path: '/api/audit/status' },
    { name: 'GET /api/alerts', needs: ['audit:read'], method: 'GET', path: '/api/alerts', projectLess: true },
    { name: 'GET /api/datamap', needs: ['admin'], method: 'GET', path: '/api/datamap' },
    // Who could read one person's data (docs/incident.md), answered by the server.
    { name: 'POST /api/incident/who-could-read', needs: ['admin'], method: 'POST', path: '/api/incident/who-could-read',
      headers: { 'Content-Type': 'application/json' }, body: () => JSON.stringify({ distinct_id: distinctId }) },
    { name: 'GET /api/reports', needs: ['query:aggregate'], method: 'GET', path: '/api/reports' },
    { name: 'GET /api/dashboards', needs: ['query:aggregate'], method: 'GET', path: '/api/dashboards' },
    // One person's data (docs/privacy.md, "Erasure and access"): the most
    // personal read there is.
    { name: 'POST /api/access-request', needs: ['admin'], method: 'POST', path: '/api/access-request',
      headers: { 'Content-Type': 'application/json' }, body: () => JSON.stringify({ distinct_ids: [distinctId] }) },
    { name: 'POST /import', needs: ['ingest'], method: 'POST', path: '/import?verbose=1', tokenIsUnauthenticated: true,
      headers: { 'Content-Type': 'application/json' },
      body: () => JSON.stringify([{ event: 'authz_event', properties: { distinct_id: distinctId, user_id: userId, time: nowSeconds(), $insert_id: hex32() } }]) },
  ];

  const call = (route, secret, { projectIdParam } = {}) => {
    const separator = route.path.includes('?') ? '&' : '?';
    const requestPath = projectIdParam ? `${route.path}${separator}project_id=${projectIdParam}` : route.path;
    const headers = { ...(route.headers || {}) };
    if (secret !== undefined) {
      Object.assign(headers, server.authHeader(secret));
    }
    return server.request({ method: route.method, path: requestPath, headers, body: route.body ? route.body() : undefined });
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
    res = await call(ROUTES.at(-1), server.project.secret);
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

  for (const route of ROUTES) {
    describe(route.name, () => {
      it('no credential: 401', async () => {
        expectDenied(await call(route, undefined), 401, null, 'none');
      });
      it('an unknown key and an unknown secret: 401', async () => {
        expectDenied(await call(route, `mpk_0123456789abcdef_${'0'.repeat(64)}`), 401, null, 'unknown key');
        expectDenied(await call(route, '0'.repeat(64)), 401, null, 'unknown secret');
      });
      it('the public token: ingest only', async () => {
        const res = await call(route, server.project.token);
        if (route.tokenIsUnauthenticated) {
          expectDenied(res, 401, null, 'token on /import');
        } else {
          expectDenied(res, 403, route.needs.find((scope) => scope !== 'ingest'), 'token');
        }
      });
      it('the project secret: every scope of its project', async () => {
        const res = await call(route, server.project.secret);
        assert.equal(res.status, 200, res.text);
        route.check?.(res);
      });
      for (const scope of SCOPES) {
        it(`a key with only ${scope}`, async () => {
          const res = await call(route, keys[scope].secret);
          const missing = route.needs.find((needed) => needed !== scope);
          if (missing === undefined) {
            assert.equal(res.status, 200, res.text);
          } else {
            expectDenied(res, 403, missing, `key ${scope}`);
          }
        });
      }
      it('a key with query:aggregate and query:subjects', async () => {
        const res = await call(route, keys.subjects_and_aggregate.secret);
        const missing = route.needs.find((needed) => needed !== 'query:aggregate' && needed !== 'query:subjects');
        if (missing === undefined) {
          assert.equal(res.status, 200, res.text);
          route.check?.(res);
        } else {
          expectDenied(res, 403, missing, 'analyst key');
        }
      });
      it("another project's secret naming this project: 403", async () => {
        expectDenied(await call(route, other.secret, { projectIdParam: projectId() }), 403, null, 'other project');
      });
      it('a server admin key with project_id: allowed; without it, where a project is needed: 400', async () => {
        const res = await call(route, keys.admin_all.secret, { projectIdParam: projectId() });
        assert.equal(res.status, 200, res.text);
        const bare = await call(route, keys.admin_all.secret);
        const projectLess = route.projectLess || ['/metrics', '/api/keys', '/api/audit', '/api/projects', '/api/audit/status'].includes(route.path);
        assert.equal(bare.status, projectLess ? 200 : 400, bare.text);
      });
      it('an expired, a revoked and a rotated-away key: 401', async () => {
        expectDenied(await call(route, keys.expired.secret), 401, null, 'expired');
        expectDenied(await call(route, keys.revoked.secret), 401, null, 'revoked');
        expectDenied(await call(route, keys.rotated.secret), 401, null, 'rotated away');
        const res = await call(route, keys.rotated_new.secret);
        assert.equal(res.status, 200, res.text);
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
