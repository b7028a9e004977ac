// Per-project quotas and project deletion on the real server (issue 6;
// docs/security.md, "Project quotas" and "Project deletion"): a project
// over its [projects.NAME] ingest_events_per_second is answered 429 with
// Retry-After, and one at its disk_bytes_max 507, each naming the setting,
// and every event acknowledged before is kept; the daily export quota of a
// key survives a restart; POST /api/projects/<id>/delete (admin, with the
// project's name to confirm) removes its keys, token, secret, events and
// profiles, leaves the other projects alone, and its audit records stay in
// a chain that still verifies; the other `minpanel project …` acts are
// audited, by the command line or, while a server holds the log, by the
// server on SIGHUP.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { spawn } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import {
  MINPANEL_BIN, clearOfMidnight, createProject, freePort, hex32, isoDate, makeTempDir, nowSeconds, parseJsonLines, runCli, sleep, startServer,
} from './harness.mjs';

describe('project quotas and project deletion', () => {
  let server;
  let adminSecret;
  const projects = {};
  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];

  const events = (count, name = 'quota_event') => Array.from({ length: count }, (_, index) => ({
    event: name, properties: { distinct_id: `generated-${index % 7}`, time: nowSeconds(), $insert_id: hex32() },
  }));
  const importAs = (project, batch) => server.request({
    method: 'POST', path: '/import?strict=1', headers: { ...server.authHeader(project.secret), 'Content-Type': 'application/json' },
    body: JSON.stringify(batch),
  });
  const exported = async (project) => {
    const res = await server.request({
      path: `/api/2.0/export?from_date=${isoDate(-3)}&to_date=${isoDate(1)}&reason=quota%20check&watermark=false`,
      headers: server.authHeader(project.secret),
    });
    assert.equal(res.status, 200, res.text);
    return parseJsonLines(res.text);
  };

  before(async () => {
    server = await startServer({
      projectName: 'quota-main',
      configText: 'store_memtable_rows_max = 20\n' +
        '[projects.quota-rate]\ningest_events_per_second = 10\n' +
        '[projects.quota-disk]\ndisk_bytes_max = 1\n',
    });
    for (const name of ['quota-rate', 'quota-disk', 'doomed']) {
      projects[name] = await createProject(server.dataDir, server.keysDir, name);
    }
    const { stdout } = await runCli(['keys', 'create', '--name', 'quota-admin', '--admin', '--json', ...dataArgs()]);
    adminSecret = JSON.parse(stdout.trim()).secret;
    await server.reload();
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('a project over its ingest rate is answered 429 with Retry-After; what was acknowledged is kept', async () => {
    const project = projects['quota-rate'];
    let acknowledged = 0;
    let refused = null;
    // 100 events: refused unless the requests took over 9 s in all.
    for (let request = 0; request < 10; request += 1) {
      const res = await importAs(project, events(10));
      if (res.status === 200) {
        acknowledged += JSON.parse(res.text).num_records_imported;
      } else if (refused === null) {
        refused = res;
      }
    }
    assert.ok(refused, 'no request was refused at 10 events per second');
    assert.equal(refused.status, 429, refused.text);
    assert.ok(Number(refused.headers['retry-after']) >= 1, JSON.stringify(refused.headers));
    assert.match(refused.text, /over its ingest rate of 10 events per second \(projects\.quota-rate\.ingest_events_per_second\)/);
    assert.ok(acknowledged >= 10, `acknowledged ${acknowledged}`);
    assert.equal((await exported(project)).length, acknowledged);
    // Another project is not held to it.
    for (let request = 0; request < 6; request += 1) {
      assert.equal((await importAs(server.project, events(5))).status, 200);
    }
  });

  it('a project at its disk quota is answered 507 naming it; nothing stored is dropped', async () => {
    const project = projects['quota-disk'];
    let acknowledged = 0;
    let refused = null;
    // Its first segment file (a flush after 20 rows) puts it over 1 byte.
    for (let attempt = 0; attempt < 100 && refused === null; attempt += 1) {
      const res = await importAs(project, events(25, 'disk_event'));
      if (res.status === 200) {
        acknowledged += JSON.parse(res.text).num_records_imported;
        await sleep(100);
      } else {
        refused = res;
      }
    }
    assert.ok(refused, 'the disk quota never refused');
    assert.equal(refused.status, 507, refused.text);
    assert.match(refused.text, /disk quota: project quota-disk holds \d+ bytes, at its 1 \(projects\.quota-disk\.disk_bytes_max\)/);
    assert.ok(acknowledged >= 25);
    assert.equal((await exported(project)).length, acknowledged);
  });

  it('a key\'s export quota of the day survives a restart', async () => {
    // The quota is per UTC day: the day must not turn during the restart.
    await clearOfMidnight(60000);
    const res = await server.request({
      method: 'POST', path: '/api/keys', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'daily', scopes: ['export'], export_rows_per_day: 10 }),
    });
    assert.equal(res.status, 201, res.text);
    const key = JSON.parse(res.text);
    const first = await server.request({
      path: `/api/2.0/export?from_date=${isoDate(-3)}&to_date=${isoDate(1)}`, headers: server.authHeader(key.secret),
    });
    assert.equal(first.status, 200, first.text);
    await server.restart();
    const second = await server.request({
      path: `/api/2.0/export?from_date=${isoDate(-3)}&to_date=${isoDate(1)}`, headers: server.authHeader(key.secret),
    });
    assert.equal(second.status, 429, second.text);
    assert.match(JSON.parse(second.text).error, /export_rows_per_day/);
  });

  it('deleting a project removes its credentials, events and profiles, and keeps its audit records', async () => {
    const doomed = projects.doomed;
    const name = `doomed_${hex32().slice(0, 8)}`;
    const stored = await importAs(doomed, events(12, name));
    assert.equal(stored.status, 200, stored.text);
    const profile = { $token: doomed.token, $distinct_id: 'generated-profile', $set: { plan: 'gold' } };
    const engage = await server.request({ path: `/engage?data=${encodeURIComponent(Buffer.from(JSON.stringify(profile)).toString('base64'))}` });
    assert.equal(engage.text, '1');
    const keyRes = await server.request({
      method: 'POST', path: `/api/keys?project_id=${doomed.id}`, headers: { ...server.authHeader(adminSecret), 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'doomed-reader', scopes: ['query:aggregate'], project_id: doomed.id }),
    });
    assert.equal(keyRes.status, 201, keyRes.text);
    const doomedKey = JSON.parse(keyRes.text);
    const deletePath = (confirm) => `/api/projects/${doomed.id}/delete?project_id=${doomed.id}&confirm=${confirm}`;

    // Not without admin, not without the name.
    const noScope = await server.request({ method: 'POST', path: deletePath('doomed'), headers: server.authHeader(doomedKey.secret) });
    assert.equal(noScope.status, 403, noScope.text);
    const unconfirmed = await server.request({ method: 'POST', path: deletePath('other'), headers: server.authHeader(adminSecret) });
    assert.equal(unconfirmed.status, 400, unconfirmed.text);
    assert.match(JSON.parse(unconfirmed.text).error, /^confirm: /);

    const res = await server.request({ method: 'POST', path: deletePath('doomed'), headers: server.authHeader(adminSecret) });
    assert.equal(res.status, 200, res.text);
    const deletion = JSON.parse(res.text);
    assert.equal(deletion.deleted.id, doomed.id);
    assert.equal(deletion.keys_removed, 1);
    assert.equal(deletion.profile_subjects_erased, 1);

    // Its token, secret and key are no one now.
    const late = { event: 'late', properties: { token: doomed.token, distinct_id: 'generated-late' } };
    const track = await server.request({ path: `/track?verbose=1&data=${encodeURIComponent(Buffer.from(JSON.stringify(late)).toString('base64'))}` });
    assert.equal(track.status, 401, track.text);
    assert.equal((await importAs(doomed, events(1))).status, 401);
    const keyQuery = await server.request({
      method: 'POST', path: '/api/query', headers: server.authHeader(doomedKey.secret),
      body: JSON.stringify({ kind: 'segmentation', from: '-3d', to: 'now', events: [name] }),
    });
    assert.equal(keyQuery.status, 401, keyQuery.text);
    const adminExport = await server.request({
      path: `/api/2.0/export?project_id=${doomed.id}&from_date=${isoDate(-3)}&to_date=${isoDate(1)}`,
      headers: server.authHeader(adminSecret),
    });
    assert.equal(adminExport.status, 404, adminExport.text);
    // The others are untouched; a new project never takes its id or name.
    assert.ok((await exported(server.project)).length > 0);
    const again = await runCli(['project', 'create', 'fresh-after-delete', '--json', ...dataArgs()]);
    assert.ok(JSON.parse(again.stdout.trim()).id > doomed.id);

    // Its audit records stay, and the chain verifies.
    const audit = await server.request({ path: '/api/audit?act=project.delete&limit=100', headers: server.authHeader(adminSecret) });
    assert.equal(audit.status, 200, audit.text);
    const acts = JSON.parse(audit.text).map((record) => record.act);
    assert.deepEqual(acts, ['project.delete.start', 'project.delete']);
    // Throws on a non-zero exit (a broken chain).
    await runCli(['audit', 'verify', ...dataArgs()]);
  });

  it('minpanel project delete does the same with the server stopped, and asks for --yes', async () => {
    await server.stop();
    try {
      await assert.rejects(runCli(['project', 'delete', 'quota-rate', ...dataArgs()]), /--yes/);
      const { stdout } = await runCli(['project', 'delete', 'quota-rate', '--yes', ...dataArgs()]);
      assert.equal(JSON.parse(stdout.trim()).deleted.name, 'quota-rate');
    } finally {
      await server.start();
    }
    assert.equal((await importAs(projects['quota-rate'], events(1))).status, 401);
    const audit = await server.request({ path: '/api/audit?act=project.delete&key=local&limit=100', headers: server.authHeader(adminSecret) });
    assert.deepEqual(JSON.parse(audit.text).map((record) => record.act), ['project.delete.start', 'project.delete']);
  });

  it('the other minpanel project acts are audited: through the queue and again on SIGHUP while a server runs, by the command line when none runs', async () => {
    const projectActs = async () => {
      const res = await server.request({ path: '/api/audit?act=project.&key=local&limit=1000', headers: server.authHeader(adminSecret) });
      assert.equal(res.status, 200, res.text);
      return JSON.parse(res.text).filter((record) => !record.act.startsWith('project.delete'));
    };
    const actsOf = (records, id) => records.filter((record) => record.target === String(id))
      .map((record) => `${record.act} ${record.route}`);

    // With the server running the command line cannot take the audit log:
    // it leaves its record in the log's queue, which the server appends at
    // once (route cli), and the server records the change again when it
    // takes it up at its reload (route reload).
    const created = await runCli(['project', 'create', 'acts-live', '--json', ...dataArgs()]);
    assert.match(created.stderr, /this change is recorded in the audit log \(appended by the running server\)/);
    const live = JSON.parse(created.stdout.trim());
    assert.deepEqual(actsOf(await projectActs(), live.id), ['project.create cli']);
    await server.reload();
    // An event makes the project's pseudonym key (version 1), to replace.
    assert.equal((await importAs(live, events(1))).status, 200);
    await runCli(['project', 'rotate-secret', 'acts-live', ...dataArgs()]);
    await runCli(['project', 'set-domains', 'acts-live', 'acts.example.test', ...dataArgs()]);
    await runCli(['project', 'set-min-group-size', 'acts-live', '5', ...dataArgs()]);
    await runCli(['project', 'rotate-key', 'acts-live', '--yes', ...dataArgs()]);
    await server.reload();
    assert.deepEqual(actsOf(await projectActs(), live.id), [
      'project.create cli', 'project.create reload',
      'project.rotate-secret cli', 'project.set-domains cli', 'project.set-min-group-size cli',
      'project.rotate-key cli',
      'project.rotate-secret reload', 'project.set-domains reload',
      'project.set-min-group-size reload', 'project.rotate-key reload',
    ]);
    // A reload that finds nothing changed records nothing.
    const before = (await projectActs()).length;
    await server.reload();
    assert.equal((await projectActs()).length, before);

    // With the server stopped the command line records its own acts.
    await server.stop();
    let offline;
    try {
      offline = JSON.parse((await runCli(['project', 'create', 'acts-offline', '--json', ...dataArgs()])).stdout.trim());
      await runCli(['project', 'set-min-group-size', 'acts-offline', '3', ...dataArgs()]);
      await runCli(['audit', 'verify', ...dataArgs()]);
    } finally {
      await server.start();
    }
    const records = await projectActs();
    assert.deepEqual(actsOf(records, offline.id), ['project.create cli', 'project.set-min-group-size cli']);
    assert.ok(records.every((record) => record.projects.length === 1 && String(record.projects[0]) === record.target));
    // The server's start recorded none of them twice.
    await server.reload();
    assert.equal((await projectActs()).length, records.length);
  });

  it('serve --demo records the demo project it creates, once', async () => {
    const root = await makeTempDir();
    const args = ['--data', path.join(root, 'data'), '--keys', path.join(root, 'keys')];
    const serveDemo = async () => {
      const child = spawn(MINPANEL_BIN, ['serve', '--demo', '--listen', `127.0.0.1:${await freePort()}`, ...args],
        { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (chunk) => { out += chunk; });
      const exited = new Promise((resolve) => child.on('exit', resolve));
      for (let waited = 0; !out.includes('minpanel is listening'); waited += 50) {
        assert.ok(waited < 20000, `serve --demo did not start: ${out}`);
        await sleep(50);
      }
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
      return out;
    };
    try {
      assert.match(await serveDemo(), /Created the demo project/);
      assert.doesNotMatch(await serveDemo(), /Created the demo project/);
      const { stdout } = await runCli(['audit', 'show', '--act', 'project.create', ...args]);
      const records = stdout.trim().split('\n').map((line) => JSON.parse(line));
      assert.deepEqual(records.map((record) => `${record.act} ${record.key} ${record.route} ${record.target}`),
        [`project.create local cli ${records[0].projects[0]}`]);
      await runCli(['audit', 'verify', ...args]);
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});
