// Erasure and access requests on the real server (docs/privacy.md, "Erasure
// and access"): people erased by distinct id while other clients keep
// importing and the store keeps flushing and compacting (a 500-row
// memtable); their events gone from every export and access request at
// once; after the purge (`minpanel erase --purge-now`) their pseudonym gone
// from every byte of the data folder, raw and as `minpanel debug dump`
// decodes each store file; no other person's event lost. A second server is
// SIGKILLed in the middle of erasures and restarted.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { startServer, runCli, hex32, nowSeconds, sleep, basicAuth, isoDate, findPseudonyms, makeTempDir } from './harness.mjs';

const MEMTABLE_ROWS = 500;
const VICTIMS = 20;
const BYSTANDERS = 100;

// Noon UTC yesterday: every event of a test falls inside one UTC day (a
// base of "two hours ago" put a victim's events on both sides of midnight
// when the suite ran just after it, and the daily unique count saw 21 of 20).
function middayYesterday() {
  return Math.floor(nowSeconds() / 86400) * 86400 - 43200;
}

function eventsOf(distinctId, count, baseTime, extra = {}) {
  const events = [];
  for (let index = 0; index < count; index += 1) {
    events.push({
      event: ['Page Viewed', 'Clicked', 'Signed Up'][index % 3],
      properties: { distinct_id: distinctId, $insert_id: hex32(), time: baseTime + index, seq: index, ...extra },
    });
  }
  return events;
}

async function postJson(server, route, body, auth = server.authHeader()) {
  const res = await server.request({
    method: 'POST', path: route, headers: { ...auth, 'Content-Type': 'application/json' },
    body: JSON.stringify(body), timeoutMs: 120000,
  });
  return { status: res.status, body: res.status === 200 ? JSON.parse(res.text) : res.text };
}

// How many times a 503 is retried, 100 ms apart: a loaded 2-core machine
// can take seconds to flush a 500-row memtable while the purge runs.
const RETRIES_503 = 600;

// Imports, retrying a 503 (flushes catching up) with the same insert ids.
async function importOk(server, events) {
  for (let attempt = 0; ; attempt += 1) {
    const res = await server.importJson(events, { timeoutMs: 60000 });
    if (res.status !== 503 || attempt === RETRIES_503) {
      assert.equal(res.status, 200, `import: ${res.status} ${res.text}`);
      return;
    }
    await sleep(100);
  }
}

// People who sent 'Signed Up' (only the victims do), summed over the days.
// The range is the events' day and the next, not yesterday and today: a run
// that passes midnight would otherwise lose the events' day from it.
async function signedUpPeople(server, baseTime) {
  const query = {
    kind: 'segmentation', from: isoDate(0, baseTime * 1000), to: isoDate(2, baseTime * 1000), unit: 'day',
    events: ['Signed Up'], measure: 'unique',
  };
  const res = await postJson(server, '/api/query', query);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.series.reduce((sum, series) => sum + series.values.reduce((a, b) => a + b, 0), 0);
}

async function exportAll(server) {
  return server.exportEvents({ fromDate: '2020-01-01', toDate: '2035-12-31' });
}

describe('erasure during sustained ingestion and compaction', () => {
  let server;
  const run = hex32().slice(0, 8);
  const victims = Array.from({ length: VICTIMS }, (_, index) => `victim-${run}-${index}`);
  const anonymous = `anon-${run}-0`;
  const baseTime = middayYesterday();

  before(async () => {
    server = await startServer({ projectName: 'erasure', configText: `store_memtable_rows_max = ${MEMTABLE_ROWS}\n` });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('hides the erased at once, keeps every other event, and purges every byte', { timeout: 180000 }, async () => {
    // The victims' history: events, an anonymous id merged into victim 0 by
    // $identify, and a profile each.
    const history = victims.flatMap((victim) => eventsOf(victim, 30, baseTime));
    history.push(...eventsOf(anonymous, 5, baseTime - 100));
    history.push({ event: '$identify', properties: { distinct_id: victims[0], $anon_distinct_id: anonymous, $insert_id: hex32(), time: baseTime + 50 } });
    await importOk(server, history);
    for (const victim of victims.slice(0, 3)) {
      const profile = { $token: server.project.token, $distinct_id: victim, $set: { plan: 'pro', seats: 3 } };
      const res = await server.request({ path: `/engage?data=${encodeURIComponent(Buffer.from(JSON.stringify(profile)).toString('base64'))}` });
      assert.equal(res.text, '1');
    }

    // What is held about victim 0: its events and its merged anonymous id's.
    const access = await postJson(server, '/api/access-request', { distinct_ids: [victims[0]] });
    assert.equal(access.status, 200, JSON.stringify(access.body));
    assert.equal(access.body.subjects.length, 2, 'victim 0 and the anonymous id merged into it');
    assert.equal(access.body.events.length, 30 + 5 + 1);
    assert.ok(access.body.profile_updates.length >= 1, 'the profile update');
    // Each profile update names the policy version that shaped it: the one in force.
    assert.deepEqual([...new Set(access.body.profile_updates.map((update) => update.policy_version))],
      [access.body.policy.in_force], JSON.stringify(access.body.profile_updates[0]));
    assert.ok(!JSON.stringify(access.body).includes(victims[0]), 'the raw id is not in the answer');
    assert.equal(await signedUpPeople(server, baseTime), VICTIMS, 'every victim counted before the erasure');
    const everyone = await postJson(server, '/api/access-request', { distinct_ids: victims });
    const pseudonyms = everyone.body.subjects;
    assert.equal(pseudonyms.length, VICTIMS + 1);

    // An export before the erasure: its audit subject file lists the
    // victims' pseudonyms, until the erasure rewrites it (issue 6).
    const exportedBefore = await exportAll(server);
    assert.ok(exportedBefore.some((row) => pseudonyms.includes(row.properties.distinct_id)));
    const subjectsDir = path.join(server.dataDir, 'audit', 'subjects');
    const subjectFiles = async () => (await fsp.readdir(subjectsDir)).filter((name) => name.endsWith('.txt'));
    const listedNames = await subjectFiles();
    const listings = await Promise.all(listedNames.map((name) => fsp.readFile(path.join(subjectsDir, name), 'utf8')));
    assert.ok(listings.some((text) => pseudonyms.some((pseudonym) => text.includes(pseudonym))), 'a side file lists the victims');

    // Sustained ingestion of bystanders while the erasure runs.
    let stopping = false;
    let bystanderAcked = 0;
    const failures = [];
    const client = async (clientIndex) => {
      let batch = 0;
      while (!stopping) {
        const events = [];
        for (let index = 0; index < 100; index += 1) {
          events.push(...eventsOf(`bystander-${run}-${(clientIndex * 37 + index) % BYSTANDERS}`, 1, baseTime + batch, { client: clientIndex, batch }));
        }
        // A 503 (the memtable full while flushes catch up) is retried with
        // the same insert ids, as the SDKs retry; only a 200 counts.
        for (let attempt = 0; ; attempt += 1) {
          const res = await server.importJson(events, { timeoutMs: 60000 }).catch((error) => ({ status: 0, text: String(error) }));
          if (res.status === 200) {
            bystanderAcked += events.length;
            break;
          }
          if (res.status !== 503 || attempt === RETRIES_503) {
            failures.push(`${res.status} ${res.text}`.slice(0, 200));
            break;
          }
          await sleep(100);
        }
        batch += 1;
      }
    };
    const clients = [0, 1, 2].map(client);
    await sleep(1500);

    const erased = await postJson(server, '/api/erase', { distinct_ids: victims });
    assert.equal(erased.status, 200, JSON.stringify(erased.body));
    assert.equal(erased.body.distinct_ids, VICTIMS);
    assert.equal(erased.body.subjects, VICTIMS + 1);
    assert.equal(erased.body.linked_subjects, 1);
    assert.match(erased.body.reference, /^[0-9a-f]{64}$/);

    // Invisible at once, while ingestion goes on.
    const after = await postJson(server, '/api/access-request', { distinct_ids: victims });
    assert.deepEqual(after.body.events, []);
    assert.deepEqual(after.body.profile_updates, []);
    assert.equal(await signedUpPeople(server, baseTime), 0, 'no erased person counted by a query');
    const during = await exportAll(server);
    const stillThere = during.filter((row) => pseudonyms.includes(row.properties.distinct_id));
    assert.deepEqual(stillThere, [], 'no erased event in the export');
    await sleep(1500);
    stopping = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(bystanderAcked >= 1000, `sustained ingestion: ${bystanderAcked} events`);

    // Nothing else lost: every acknowledged bystander event is there.
    const rows = await exportAll(server);
    assert.equal(rows.filter((row) => pseudonyms.includes(row.properties.distinct_id)).length, 0);
    assert.equal(rows.length, bystanderAcked);

    // The audit record: a count and a keyed reference, no pseudonym.
    const audit = await server.request({ path: '/api/audit?act=erase', headers: server.authHeader() });
    const records = JSON.parse(audit.text);
    assert.equal(records.length, 1);
    assert.equal(records[0].subjects, VICTIMS + 1);
    assert.equal(records[0].params_sha256, erased.body.reference);
    // The earlier export's subject file: rewritten, no victim in it, and a
    // record in the chain states its new SHA-256 (docs/formats/audit.md,
    // "Rewritten subject files").
    const rewrites = JSON.parse((await server.request({ path: '/api/audit?act=subjects.rewrite', headers: server.authHeader() })).text);
    assert.ok(rewrites.length >= 1, JSON.stringify(rewrites));
    assert.ok(rewrites[0].subjects >= VICTIMS, JSON.stringify(rewrites[0]));
    assert.equal(rewrites[0].params_sha256, erased.body.reference);
    for (const name of await subjectFiles()) {
      const text = await fsp.readFile(path.join(subjectsDir, name), 'utf8');
      assert.deepEqual(pseudonyms.filter((pseudonym) => text.includes(pseudonym)), [], `${name} names no victim`);
    }

    // The access request by the command line on the stopped server
    // (`minpanel access-request --out`, 0600): a bystander's events, every
    // one of them, and nothing of an erased victim.
    await server.stop('SIGTERM');
    const accessFile = path.join(server.root, 'access.json');
    await runCli(['access-request', '--project', 'erasure', '--distinct-id', `bystander-${run}-0`, '--distinct-id', victims[1],
      '--out', accessFile, '--data', server.dataDir, '--keys', server.keysDir], { timeoutMs: 120000 });
    assert.equal((await fsp.stat(accessFile)).mode & 0o777, 0o600);
    const held = JSON.parse(await fsp.readFile(accessFile, 'utf8'));
    const heldSubjects = new Set(held.subjects);
    const bystanderRows = rows.filter((row) => heldSubjects.has(row.properties.distinct_id));
    assert.ok(bystanderRows.length > 0, 'the bystander has events');
    assert.equal(held.events.length, bystanderRows.length, 'every stored event of the bystander, nothing of the victim');
    // Each event names the policy version that shaped it: no policy was
    // changed here, so the one in force.
    assert.deepEqual([...new Set(held.events.map((event) => event.policy_version))], [held.policy.in_force],
      JSON.stringify(held.events[0]));
    const heldRows = JSON.stringify([held.events, held.profile_updates]);
    assert.deepEqual(pseudonyms.filter((pseudonym) => heldRows.includes(pseudonym)), []);

    // The physical stage, by the command line on the stopped server.
    const idsFile = path.join(server.root, 'victims.txt');
    await fsp.writeFile(idsFile, `${victims.join('\n')}\n`);
    const { stdout } = await runCli(['erase', '--project', 'erasure', '--distinct-ids', idsFile, '--purge-now',
      '--data', server.dataDir, '--keys', server.keysDir], { timeoutMs: 120000 });
    assert.equal(JSON.parse(stdout).purged, true);
    const { hits, dumped } = await findPseudonyms(server.dataDir, pseudonyms);
    assert.ok(dumped >= 2, `dumped ${dumped} store files`);
    assert.deepEqual(hits, []);

    // The chain verifies, and the blast radius of the exporting key accepts
    // the rewritten file, counting the victims' lines as erased.
    const verifyArgs = ['audit', 'verify', '--data', server.dataDir, '--keys', server.keysDir];
    const verified = await runCli(verifyArgs);
    assert.match(verified.stdout, /^ok: /);
    assert.match(verified.stdout, /^subject files: [1-9]\d* named by records, each with the SHA-256 the chain states last for it \([1-9]\d* rewritten by erasures\)$/m);
    // The subject file put back as it was before the erasure (a copy kept
    // elsewhere, victims and all): verify names it and fails.
    const listedIdx = listings.findIndex((text) => pseudonyms.some((pseudonym) => text.includes(pseudonym)));
    const listedFile = path.join(subjectsDir, listedNames[listedIdx]);
    const rewrittenText = await fsp.readFile(listedFile);
    await fsp.writeFile(listedFile, listings[listedIdx]);
    const older = await runCli(verifyArgs).then(() => assert.fail('verify passed an older subject file'), (error) => error);
    assert.equal(older.code, 1);
    assert.match(older.stdout, new RegExp(`^broken: subject file subjects/${listedNames[listedIdx]} holds the text its export record stated, not the one record \\d+ \\(subjects\\.rewrite`));
    await fsp.writeFile(listedFile, rewrittenText);
    assert.match((await runCli(verifyArgs)).stdout, /^ok: /);
    const out = await makeTempDir('minpanel-erasure-blast-');
    await runCli(['incident', 'blast-radius', '--key', `secret:${server.project.id}`,
      '--from', '2020-01-01T00:00:00Z', '--to', '2035-12-31T00:00:00Z', '--data', server.dataDir, '--keys', server.keysDir,
      '--out', out, '--company', 'Example Ltd', '--domain', 'example.com', '--detected', new Date().toISOString()], { timeoutMs: 120000 });
    const report = JSON.parse(await fsp.readFile(path.join(out, 'blast-radius.json'), 'utf8'));
    assert.equal(report.chain.ok, true);
    assert.ok(report.counts.exports >= 1);
    assert.ok(report.warnings.some((warning) => /of its subjects were erased since/.test(warning.message)), JSON.stringify(report.warnings));
    assert.deepEqual(report.subjects.filter((subject) => pseudonyms.includes(subject.subject)), []);
    await fsp.rm(out, { recursive: true, force: true });

    await server.start();
    const restarted = await exportAll(server);
    assert.equal(restarted.length, bystanderAcked, 'every bystander event after the purge and a restart');
    // While the server holds the folder, the command line says where to go.
    await assert.rejects(runCli(['access-request', '--project', 'erasure', '--distinct-id', `bystander-${run}-0`,
      '--data', server.dataDir, '--keys', server.keysDir]), /POST \/api\/access-request/);
  });
});

describe('SIGKILL in the middle of an erasure', () => {
  let server;
  const run = hex32().slice(0, 8);
  const baseTime = middayYesterday();

  before(async () => {
    server = await startServer({ projectName: 'erasure-kill', configText: `store_memtable_rows_max = ${MEMTABLE_ROWS}\n` });
  });

  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('refuses bad requests with the field and the limit named', async () => {
    let res = await postJson(server, '/api/erase', { distinct_ids: [] });
    assert.equal(res.status, 400);
    assert.match(res.body, /distinct_ids/);
    res = await postJson(server, '/api/erase', { distinct_ids: ['a'], purge: 'later' });
    assert.equal(res.status, 400);
    assert.match(res.body, /purge/);
    res = await postJson(server, '/api/access-request', { distinct_ids: Array.from({ length: 101 }, (_, index) => `x${index}`) });
    assert.equal(res.status, 413);
    assert.match(res.body, /kAccessDistinctIdsMax/);
    res = await postJson(server, '/api/erase', { distinct_ids: ['a'] }, { Authorization: basicAuth(`${server.project.token}:`) });
    assert.ok(res.status === 401 || res.status === 403, `the public token cannot erase: ${res.status}`);
  });

  it('an acknowledged erasure holds after kill -9, a retried one completes, nothing else is lost', { timeout: 180000 }, async () => {
    let bystanders = 0;
    let interrupted = 0;
    const rounds = 4;
    const allVictims = [];
    for (let round = 0; round < rounds; round += 1) {
      const victims = Array.from({ length: 50 }, (_, index) => `kill-victim-${run}-${round}-${index}`);
      allVictims.push(...victims);
      const events = victims.flatMap((victim) => eventsOf(victim, 20, baseTime));
      const others = Array.from({ length: 40 }, (_, index) => eventsOf(`kill-bystander-${run}-${index}`, 25, baseTime + round * 100)).flat();
      await importOk(server, events);
      await importOk(server, others);
      bystanders += others.length;
      const body = JSON.stringify({ distinct_ids: victims, purge: 'now' });
      const pending = server.request({
        method: 'POST', path: '/api/erase', headers: { ...server.authHeader(), 'Content-Type': 'application/json' }, body, timeoutMs: 60000,
      }).catch((error) => ({ status: 0, text: String(error) }));
      // The kill lands at a different point of the erasure each round: the
      // request in flight, the deletion record, the flush, the rewrites.
      await sleep([2, 15, 40, 80][round]);
      await server.stop('SIGKILL');
      const answer = await pending;
      interrupted += answer.status === 200 ? 0 : 1;
      await server.start();
      const visible = await postJson(server, '/api/access-request', { distinct_ids: victims.slice(0, 100) });
      if (answer.status === 200) {
        assert.deepEqual(visible.body.events, [], `round ${round}: an acknowledged erasure survives kill -9`);
      }
      // The client retries until acknowledged, as it would.
      const retried = await postJson(server, '/api/erase', { distinct_ids: victims, purge: 'now' });
      assert.equal(retried.status, 200, JSON.stringify(retried.body));
      assert.equal(retried.body.purged, true);
    }
    assert.ok(interrupted >= 1, 'at least one kill landed before the erasure answered');
    const rows = await exportAll(server);
    assert.equal(rows.length, bystanders, 'every bystander event survives the kills');
    const pseudonyms = [];
    for (let first = 0; first < allVictims.length; first += 100) {
      const held = await postJson(server, '/api/access-request', { distinct_ids: allVictims.slice(first, first + 100), linked: false });
      assert.deepEqual(held.body.events, []);
      pseudonyms.push(...held.body.subjects);
    }
    await server.stop('SIGTERM');
    const { hits } = await findPseudonyms(server.dataDir, pseudonyms.slice(0, 40));
    assert.deepEqual(hits, []);
    await server.start();
  });

});
