// `minpanel backup` while the real server ingests, and `minpanel restore`
// into a fresh folder served by a second server (docs/privacy.md, "Backup
// and restore"): POST /api/query answers the same for every event stored
// before the backup began, the events stored during it are there or not
// but never half, the keys travel apart from the data (the data backup
// holds no key), people erased after the backup (purged, or still only
// hidden) stay erased in the restore — in no byte of the restored folder,
// the backup's audit subject files rewritten, `audit verify` passing —
// and so do properties purged after
// it (docs/privacy.md, "Purging a property"; purged at once and so retired
// into the erasure journal, or still only hidden), a restore without the
// keys goes on in a new audit key epoch, a tar stream restores the same,
// and a restore into a folder that is not empty is refused by name.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import { MINPANEL_BIN, MinpanelServer, findPseudonyms, isoDate, nowSeconds, runCli, sleep, startServer } from './harness.mjs';

const execFileAsync = promisify(execFile);
const PLANS = ['free', 'pro', 'team'];

function events(name, count, offset) {
  const now = nowSeconds();
  return Array.from({ length: count }, (_, idx) => ({
    event: name,
    properties: {
      distinct_id: `user-${(offset + idx) % 37}`,
      time: now - 3600 + ((offset + idx) % 3000),
      $insert_id: `${name}-${offset + idx}`,
      plan: PLANS[(offset + idx) % PLANS.length],
      // Generated markers of two keys purged after the backup.
      coupon_code: `cp${offset + idx}`,
      promo_ref: `pr${offset + idx}`,
    },
  }));
}

function filesUnder(folder) {
  const found = [];
  for (const entry of fs.readdirSync(folder, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) {
      found.push(path.relative(folder, path.join(entry.parentPath ?? entry.path, entry.name)));
    }
  }
  return found;
}

describe('backup and restore', () => {
  let live;
  let restored;
  let acknowledgedBefore = 0;
  let acknowledgedDuring = 0;
  let backupDir;
  let keysBackupDir;
  let erasedPseudonyms;
  let restoreOutput;
  let retrievalTask;

  async function ask(server, query) {
    const res = await server.request({
      method: 'POST',
      path: '/api/query',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify(query),
    });
    assert.equal(res.status, 200, res.text);
    const { stats, ...answer } = JSON.parse(res.text);
    return answer;
  }

  const query = (name, measure = 'total') => ({
    kind: 'segmentation', from: isoDate(-2), to: isoDate(2), time_zone: 'UTC', events: [name], measure, breakdown: 'plan',
  });

  function total(answer) {
    return answer.series.reduce((sum, series) => sum + series.total, 0);
  }

  before(async () => {
    live = await startServer({ projectName: 'backup-it' });
    for (let batch = 0; batch < 4; batch += 1) {
      const res = await live.importJson(events('Before', 500, batch * 500));
      assert.equal(res.status, 200, res.text);
      acknowledgedBefore += 500;
    }
    // An export before the backup: its audit subject file, in the backup,
    // lists the people erased after it.
    assert.ok((await live.exportEvents({ event: ['Before'] })).length > 0);
    const held = await live.request({
      method: 'POST',
      path: '/api/access-request',
      headers: { ...live.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ distinct_ids: ['user-5', 'user-6'] }),
    });
    assert.equal(held.status, 200, held.text);
    erasedPseudonyms = JSON.parse(held.text).subjects;
    assert.equal(erasedPseudonyms.length, 2);
    // A retrieval through Mixpanel's GDPR API shapes: its result, kept a
    // week in the backup's gdpr/, holds a person erased after the backup.
    const gdprHeaders = { Authorization: `Bearer ${live.project.secret}`, 'Content-Type': 'application/json' };
    const retrieval = await live.request({
      method: 'POST',
      path: `/api/app/data-retrievals/v3.0/?token=${encodeURIComponent(live.project.token)}`,
      headers: gdprHeaders,
      body: JSON.stringify({ distinct_ids: ['user-5'], compliance_type: 'GDPR' }),
    });
    assert.equal(retrieval.status, 200, retrieval.text);
    retrievalTask = JSON.parse(retrieval.text).results.task_id;
    for (let waited = 0; ; waited += 100) {
      const status = await live.request({
        path: `/api/app/data-retrievals/v3.0/${retrievalTask}?token=${encodeURIComponent(live.project.token)}`, headers: gdprHeaders,
      });
      if (JSON.parse(status.text).results.status === 'SUCCESS') {
        break;
      }
      assert.ok(waited < 20000, status.text);
      await sleep(100);
    }
    assert.ok(fs.existsSync(path.join(live.dataDir, 'gdpr', `${retrievalTask}.json`)));
    backupDir = path.join(live.root, 'backup');
    keysBackupDir = path.join(live.root, 'backup-keys');
    let stop = false;
    const ingest = (async () => {
      for (let batch = 0; !stop; batch += 1) {
        const res = await live.importJson(events('During', 200, batch * 200));
        assert.equal(res.status, 200, res.text);
        acknowledgedDuring += 200;
      }
    })();
    try {
      await runCli(['backup', '--data', live.dataDir, '--keys', live.keysDir, '--to', backupDir,
        '--keys-to', keysBackupDir], { timeoutMs: 60000 });
    } finally {
      stop = true;
      await ingest;
    }
    assert.ok(acknowledgedDuring > 0, 'no ingestion ran during the backup');
    // Erasures after the backup: one purged at once (so retired into the
    // store's erasure journal), one still in force.
    for (const [person, purge] of [['user-5', 'now'], ['user-6', undefined]]) {
      const res = await live.request({
        method: 'POST',
        path: '/api/erase',
        headers: { ...live.authHeader(), 'Content-Type': 'application/json' },
        body: JSON.stringify(purge ? { distinct_ids: [person], purge } : { distinct_ids: [person] }),
      });
      assert.equal(res.status, 200, res.text);
    }
    // Property purges after the backup: coupon_code purged at once (retired
    // into the erasure journal), promo_ref on the Before events only, still
    // only hidden.
    for (const body of [{ key: 'coupon_code', purge: 'now' }, { key: 'promo_ref', event: 'Before' }]) {
      const res = await live.request({
        method: 'POST',
        path: '/api/properties/purge',
        headers: { ...live.authHeader(), 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
        timeoutMs: 120000,
      });
      assert.equal(res.status, 200, res.text);
    }
    const restoredRoot = path.join(live.root, 'restored');
    restoreOutput = (await runCli(['restore', '--from', backupDir, '--keys-from', keysBackupDir,
      '--data', path.join(restoredRoot, 'data'), '--keys', path.join(restoredRoot, 'keys')], { timeoutMs: 60000 })).stdout;
    restored = new MinpanelServer({
      root: restoredRoot,
      dataDir: path.join(restoredRoot, 'data'),
      keysDir: path.join(restoredRoot, 'keys'),
      project: live.project,
    });
    await restored.start();
  });

  after(async () => {
    if (restored) {
      await restored.stop();
    }
    if (live) {
      await live.cleanup();
    }
  });

  it('answers the same for every event stored before the backup, erasures since included', async () => {
    const liveTotal = await ask(live, query('Before'));
    assert.ok(total(liveTotal) < acknowledgedBefore, 'the erasures hid nothing');
    assert.ok(total(liveTotal) > acknowledgedBefore - 200);
    assert.deepEqual(await ask(restored, query('Before')), liveTotal);
    assert.deepEqual(await ask(restored, query('Before', 'unique')), await ask(live, query('Before', 'unique')));
  });

  it('holds no more of the events stored during the backup than the live store', async () => {
    const during = total(await ask(restored, query('During')));
    const liveDuring = total(await ask(live, query('During')));
    assert.ok(during <= liveDuring, `${during} > ${liveDuring}`);
  });

  it('keeps the keys apart and restores them: the same person has the same pseudonym', async () => {
    const dataFiles = filesUnder(backupDir);
    assert.ok(dataFiles.includes('BACKUP.json'));
    assert.ok(dataFiles.includes('projects.json'));
    assert.ok(dataFiles.some((file) => file.startsWith('store/segments/') || file.startsWith('store/wal/')));
    assert.ok(!dataFiles.some((file) => file.endsWith('.key') || file === 'access_keys.json'), dataFiles.join(' '));
    assert.ok(filesUnder(keysBackupDir).some((file) => file.endsWith('.key')));
    const liveRows = await live.exportEvents({ distinctId: 'user-4', event: ['Before'] });
    const restoredRows = await restored.exportEvents({ distinctId: 'user-4', event: ['Before'] });
    assert.ok(liveRows.length > 0);
    assert.deepEqual(restoredRows, liveRows);
  });

  it('never brings back a person erased after the backup', async () => {
    for (const person of ['user-5', 'user-6']) {
      assert.deepEqual(await restored.exportEvents({ distinctId: person }), [], person);
    }
  });

  it('leaves no byte of a person erased after the backup in the restored folder, audit subject files included', async () => {
    // The backup's copy of the export's subject file lists them.
    const backupSubjects = path.join(backupDir, 'audit', 'subjects');
    const listings = await Promise.all((await fsp.readdir(backupSubjects)).map((name) => fsp.readFile(path.join(backupSubjects, name), 'utf8')));
    assert.ok(listings.some((text) => erasedPseudonyms.every((pseudonym) => text.includes(pseudonym))), 'the backup lists them');
    assert.match(restoreOutput, /erasures made since the backup re-applied: 2 \(\d+ subjects; [1-9]\d* audit subject files rewritten, 1 GDPR retrieval results removed\)/);
    assert.ok(fs.existsSync(path.join(backupDir, 'gdpr', `${retrievalTask}.json`)), 'the backup holds the retrieval\'s result');
    assert.ok(!fs.existsSync(path.join(live.root, 'restored', 'data', 'gdpr', `${retrievalTask}.json`)));
    const task = await restored.request({
      path: `/api/app/data-retrievals/v3.0/${retrievalTask}?token=${encodeURIComponent(live.project.token)}`,
      headers: { Authorization: `Bearer ${live.project.secret}` },
    });
    assert.equal(task.status, 200, task.text);
    assert.doesNotMatch(task.text, /download_url/);
    const restoredData = path.join(live.root, 'restored', 'data');
    const { hits, dumped } = await findPseudonyms(restoredData, erasedPseudonyms);
    assert.ok(dumped >= 1, `dumped ${dumped} store files`);
    assert.deepEqual(hits, []);
    // Each rewrite is a record of the restored chain, and verify checks the
    // rewritten files against it.
    const dataArgs = ['--data', restoredData, '--keys', path.join(live.root, 'restored', 'keys')];
    const rewrites = (await runCli(['audit', 'show', '--act', 'subjects.rewrite', ...dataArgs])).stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.ok(rewrites.length >= 1);
    assert.ok(rewrites.every((record) => record.route === 'restore' && record.key === 'local' && record.subjects >= 1), JSON.stringify(rewrites));
    const verified = (await runCli(['audit', 'verify', ...dataArgs])).stdout;
    assert.match(verified, /^ok: /);
    assert.match(verified, /^subject files: [1-9]\d* named by records, each with the SHA-256 the chain states last for it \([1-9]\d* rewritten by erasures\)$/m);
  });

  it('restores without the keys: the audit log goes on in a new key epoch, and a server starts on it', async () => {
    // The log holds checkpoints signed by the live key folder's
    // audit-signing.key, which does not come along.
    const root = path.join(live.root, 'no-keys');
    const dataArgs = ['--data', path.join(root, 'data'), '--keys', path.join(root, 'keys')];
    const { stdout } = await runCli(['restore', '--from', backupDir, ...dataArgs], { timeoutMs: 60000 });
    const oldKey = (await runCli(['audit', 'public-key', '--data', live.dataDir, '--keys', live.keysDir])).stdout.trim();
    const newKey = (await runCli(['audit', 'public-key', ...dataArgs])).stdout.trim();
    assert.notEqual(newKey, oldKey);
    assert.match(stdout, new RegExp(`in a new key epoch; the earlier ones were signed by ${oldKey} `));
    const anchors = (await fsp.readFile(path.join(root, 'data', 'audit', 'anchors'), 'utf8')).trim().split('\n');
    assert.deepEqual(anchors.filter((line) => line.startsWith('key ')).map((line) => line.split(' ')[1]), [oldKey, newKey]);
    const server = new MinpanelServer({
      root, dataDir: path.join(root, 'data'), keysDir: path.join(root, 'keys'), project: live.project,
    });
    await server.start();
    try {
      assert.deepEqual(await ask(server, query('Before')), await ask(restored, query('Before')));
    } finally {
      await server.stop();
    }
    // Every checkpoint verifies under its epoch's key; the new key vouches
    // for the chain up to its last one, the old key for its own epoch.
    const verified = (await runCli(['audit', 'verify', ...dataArgs])).stdout;
    assert.match(verified, /^ok: \d+ records, \d+ anchors checked \([1-9]\d* signed checkpoints\)/);
    assert.match(verified, new RegExp(`key epochs: ${oldKey}, ${newKey}; [1-9]\\d* more checkpoints verified under the key of their epoch`));
    const withOld = (await runCli(['audit', 'verify', '--public-key', oldKey, ...dataArgs])).stdout;
    assert.match(withOld, /^ok: /);
    assert.match(withOld, new RegExp(`key epochs: ${oldKey}, ${newKey}; `));
    // The change of key is a record of the chain.
    const shown = (await runCli(['audit', 'show', '--act', 'log.key', ...dataArgs])).stdout.trim().split('\n').map((line) => JSON.parse(line));
    assert.equal(shown.length, 1);
    assert.equal(shown[0].target, `key ${newKey} after ${oldKey}`);
    // Any other key folder (a new one here) is refused, naming both keys.
    await assert.rejects(
      runCli(['audit', 'prune', '--older-than-days', '1', '--data', path.join(root, 'data'), '--keys', path.join(live.root, 'other-keys')]),
      (error) => error.message.includes(`signed by the key ${newKey}, not by the key folder's audit signing key`),
    );
  });

  it('never brings back a property purged after the backup', async () => {
    const liveRows = await live.exportEvents({ event: ['Before'] });
    const restoredRows = await restored.exportEvents({ event: ['Before'] });
    assert.ok(restoredRows.length > 1000, `${restoredRows.length} rows`);
    assert.equal(restoredRows.length, liveRows.length);
    for (const row of restoredRows) {
      assert.equal(row.properties.coupon_code, undefined, JSON.stringify(row));
      assert.equal(row.properties.promo_ref, undefined, JSON.stringify(row));
      assert.ok(PLANS.includes(row.properties.plan), JSON.stringify(row));
    }
    // The named purge left the During events' promo_ref (the whole-key one
    // took coupon_code from them too); the backup may hold none of them.
    const during = await restored.exportEvents({ event: ['During'] });
    assert.ok(during.every((row) => row.properties.coupon_code === undefined && /^pr\d+$/.test(row.properties.promo_ref)),
      JSON.stringify(during[0]));
  });

  it('restores a tar stream the same, and refuses a folder that is not empty', async () => {
    const tarFile = path.join(live.root, 'backup.tar');
    await execFileAsync('sh', ['-c', `"${MINPANEL_BIN}" backup --data "${live.dataDir}" --keys "${live.keysDir}" --to - > "${tarFile}"`]);
    const fromTar = path.join(live.root, 'from-tar');
    await execFileAsync('sh', ['-c', `"${MINPANEL_BIN}" restore --from - --keys-from "${keysBackupDir}" --data "${fromTar}/data" --keys "${fromTar}/keys" < "${tarFile}"`]);
    assert.ok(fs.existsSync(path.join(fromTar, 'data', 'store', 'MANIFEST')) || fs.existsSync(path.join(fromTar, 'data', 'store', 'wal')));
    await fsp.writeFile(path.join(live.root, 'not-empty'), 'x');
    await assert.rejects(
      runCli(['restore', '--from', backupDir, '--data', live.root, '--keys', `${live.root}-k2`]),
      (error) => /--data: .* is not empty/.test(error.message),
    );
  });
});
