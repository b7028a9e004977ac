// `minpanel incident blast-radius` and `who-could-read` end to end (issue 7,
// starting point 1) on the real server (and who-could-read answered by the
// running server, POST /api/incident/who-could-read): generated events ingested, three
// keys used for exports and queries, one declared compromised for a window.
// The ground truth is what the compromised key's export responses actually
// carried, read by this test: the report must name exactly those subjects
// and, per subject, exactly those property keys — no more, no fewer — and
// nothing from the same key outside the window or from the other keys (nor
// the decoy subjects watermarked exports carry, which are no one). Within
// one export some subjects' events lack keys that others' have: the report
// lists each subject with the keys of its own rows only. In the window the
// key also asks a query whose answer lists subjects (purchases broken down by
// user_id and currency, under query:subjects): the report counts those
// subjects with the keys their cells showed, from the query's subject file.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { hex32, isoDate, makeTempDir, nowSeconds, runCli, sleep, startServer } from './harness.mjs';

const USERS = 12;
const userId = (index) => `gen-blast-${index}`;
let eventsBaseSeconds = 0;  // user i's events are at this + i

// Within one event name some users lack a key the others have: users 0 and
// 1 signed up without a utm_source, users 7 and 8 viewed a page with no
// section and no browser (the subject file records each subject's keys).
const WITHOUT_UTM = [0, 1];
const WITHOUT_SECTION = [7, 8];
function events() {
  const time = nowSeconds() - 3600;
  eventsBaseSeconds = time;
  const list = [];
  for (let index = 0; index < USERS; index += 1) {
    const base = { distinct_id: userId(index), time: time + index };
    if (index <= 5) {
      const utm = WITHOUT_UTM.includes(index) ? {} : { utm_source: 'newsletter' };
      list.push({ event: 'signup', properties: { ...base, $insert_id: hex32(), plan: 'pro', ...utm } });
    }
    if (index >= 3 && index <= 8) {
      const page = WITHOUT_SECTION.includes(index) ? {} : { $browser: 'Firefox', section: 'docs' };
      list.push({ event: 'page', properties: { ...base, $insert_id: hex32(), $os: 'Linux', ...page } });
    }
    if (index >= 9) {
      // user_id, which the default policy pseudonymises as it does distinct_id.
      list.push({ event: 'purchase', properties: { ...base, $insert_id: hex32(), amount: 10, currency: 'EUR', user_id: userId(index) } });
    }
  }
  return list;
}

async function failure(args) {
  try {
    await runCli(args);
  } catch (error) {
    return error;
  }
  assert.fail(`minpanel ${args.join(' ')} succeeded`);
}

// Waits until the next whole second has begun, and returns it (ms): the
// command line's window edges are whole seconds.
async function nextSecond() {
  const edge = Math.ceil((Date.now() + 1) / 1000) * 1000;
  await sleep(edge - Date.now() + 20);
  return edge;
}

describe('incident blast-radius', () => {
  let server;
  let dir;
  const keys = {};
  const truth = new Map();  // subject -> Set of property keys, from what the compromised key got
  const queried = new Set();  // subjects the compromised key's subject-listing answer named
  let window;

  const dataArgs = () => ['--data', server.dataDir, '--keys', server.keysDir];
  const exportAs = async (key, event) => {
    const rows = await server.exportEvents({ fromDate: isoDate(-2), toDate: isoDate(1), event: [event], secret: key.secret });
    assert.ok(rows.length > 0, `export of ${event}`);
    return rows;
  };
  const queryAs = async (key) => {
    const res = await server.request({
      method: 'POST', path: '/api/query', headers: { ...server.authHeader(key.secret), 'Content-Type': 'application/json' },
      body: JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: ['signup'] }),
    });
    assert.equal(res.status, 200, res.text);
  };
  // Purchases by user_id and currency: an answer that lists subjects.
  const querySubjectsAs = async (key) => {
    const res = await server.request({
      method: 'POST', path: '/api/query', headers: { ...server.authHeader(key.secret), 'Content-Type': 'application/json' },
      body: JSON.stringify({ kind: 'segmentation', from: '-7d', to: 'now', events: ['purchase'], breakdown: ['user_id', 'currency'] }),
    });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text);
  };
  const blast = async (out, extra = []) => runCli(['incident', 'blast-radius', '--key', keys.compromised.id,
    '--from', new Date(window.from).toISOString(), '--to', new Date(window.to).toISOString(), ...dataArgs(),
    '--out', out, '--company', 'Example Ltd', '--domain', 'example.com', '--detected', new Date().toISOString(), ...extra]);

  before(async () => {
    server = await startServer({ projectName: 'blast-it' });
    dir = await makeTempDir('minpanel-blast-');
    const res = await server.importJson(events());
    assert.equal(res.status, 200, res.text);
    const create = async (name, scopes) => {
      const created = await server.request({
        method: 'POST', path: '/api/keys', headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
        body: JSON.stringify({ name, scopes }),
      });
      assert.equal(created.status, 201, created.text);
      return JSON.parse(created.text);
    };
    keys.compromised = await create('vendor', ['export', 'query:aggregate', 'query:subjects']);
    keys.other = await create('warehouse', ['export']);
    keys.aggregate = await create('dashboard', ['query:aggregate']);

    // Before the window: the compromised key exports purchases (users 9-11).
    await exportAs(keys.compromised, 'purchase');
    window = { from: await nextSecond() };
    // In the window: signups (0-5) and pages (3-8) by the compromised key,
    // an aggregate query by it, and the other keys' reads.
    for (const event of ['signup', 'page']) {
      for (const row of await exportAs(keys.compromised, event)) {
        const subject = row.properties.distinct_id;
        const fields = truth.get(subject) ?? new Set(['distinct_id']);
        for (const [key, value] of Object.entries(row.properties)) {
          if (value !== null) {  // a null is no value
            fields.add(key);
          }
        }
        truth.set(subject, fields);
      }
    }
    await queryAs(keys.compromised);
    // What the answer showed of each subject: its id (the breakdown's
    // user_id, a pseudonym), a currency and per-day counts ("time").
    for (const series of (await querySubjectsAs(keys.compromised)).series) {
      const [subject, currency] = series.breakdown;
      assert.match(subject, /^psn_[0-9a-f]{32}$/);
      queried.add(subject);
      const fields = truth.get(subject) ?? new Set(['distinct_id']);
      fields.add('time');
      if (currency !== null) {
        fields.add('currency');
      }
      truth.set(subject, fields);
    }
    assert.equal(queried.size, 3);  // users 9-11
    await exportAs(keys.other, 'purchase');
    await exportAs(keys.other, 'signup');
    await queryAs(keys.aggregate);
    window.to = await nextSecond();
    // After the window: everything again by the compromised key.
    await exportAs(keys.compromised, 'purchase');

    const accounts = ['user_id,email,language'];
    for (let index = 0; index < USERS; index += 1) {
      accounts.push(`${userId(index)},${userId(index)}@example.org,${index % 2 === 0 ? 'en' : 'es'}`);
    }
    fs.writeFileSync(path.join(dir, 'accounts.csv'), `${accounts.join('\n')}\n`);
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
    if (dir) {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names exactly the subjects and fields the key took out in the window, and maps them to accounts', async () => {
    const out = path.join(dir, 'out');
    const { stderr } = await blast(out, ['--accounts', path.join(dir, 'accounts.csv')]);
    assert.match(stderr, /chain verified/);
    // The server holds the audit log: the run's record goes to the log's
    // queue, which the server appends (docs/formats/audit.md, "Queue"); the
    // command waits for that and says so.
    assert.match(stderr, /this run is recorded in the audit log \(appended by the running server\)/);
    const audited = await server.request({ path: '/api/audit?act=incident.&limit=100', headers: server.authHeader() });
    assert.equal(audited.status, 200, audited.text);
    const runs = JSON.parse(audited.text);
    assert.equal(runs.length, 1);
    assert.equal(runs[0].act, 'incident.blast_radius');
    assert.equal(runs[0].key, 'local');
    assert.equal(runs[0].route, 'cli');
    assert.equal(runs[0].target, keys.compromised.id);
    assert.equal(runs[0].subjects, 12);
    assert.deepEqual(fs.readdirSync(path.join(server.dataDir, 'audit', 'queue')), []);
    const report = JSON.parse(fs.readFileSync(path.join(out, 'blast-radius.json'), 'utf8'));
    assert.equal(report.chain.ok, true);
    // The key's records came through the audit log's key index (docs/formats/
    // audit.md, "What a blast radius verifies"), brought up to date by this
    // run: made by it, or left by the audit log of a command that ran before
    // the server (a log keeps the index at its close).
    assert.equal(report.chain.mode, 'index');
    assert.ok(report.chain.indexed_records_checked >= 6);
    assert.equal(report.counts.exports, 2);
    assert.equal(report.counts.queries, 2);
    assert.equal(report.counts.open_exports, 0);
    assert.deepEqual(report.exports.map((record) => record.events).flat().sort(), ['page', 'signup']);
    // The aggregate query names no one; the other listed three subjects, in
    // the subject file its record names.
    const listing = report.queries.filter((record) => record.subjects_file !== '');
    assert.equal(listing.length, 1, JSON.stringify(report.queries));
    assert.equal(listing[0].names_subjects, true);
    assert.equal(listing[0].subjects, 3);
    assert.deepEqual(listing[0].properties, ['currency', 'time', 'user_id']);
    assert.equal(report.queries.find((record) => record.subjects_file === '').names_subjects, false);
    assert.ok(!report.warnings.some((warning) => /which the log does not list/.test(warning.message)),
      JSON.stringify(report.warnings));
    // The exports are watermarked with decoy subjects (no one: issue 6),
    // which the audit log leaves out; the people are the test's users, whose
    // pseudonyms who-could-read computes.
    const people = new Set();
    const pseudonymOf = [];
    for (let index = 0; index < USERS; index += 1) {
      const { stdout } = await runCli(['incident', 'who-could-read', '--subject', userId(index), '--project', 'blast-it', ...dataArgs()]);
      const who = JSON.parse(stdout);
      people.add(who.subjects[0]);
      pseudonymOf.push(who.subjects[0]);
      // The running server holds the data folder: the store is not read, and that is said.
      assert.equal(who.store.consulted, false);
      assert.match(who.store.not_consulted, /the server holds the data folder/);
    }
    const decoys = [...truth.keys()].filter((subject) => !people.has(subject));
    for (const decoy of decoys) {
      truth.delete(decoy);
    }
    const reported = new Map(report.subjects.map((subject) => [subject.subject, subject.properties]));
    assert.deepEqual([...reported.keys()].sort(), [...truth.keys()].sort());
    for (const decoy of decoys) {
      assert.ok(!reported.has(decoy), decoy);
    }
    assert.equal(reported.size, 12);
    for (const [subject, fields] of truth) {
      assert.deepEqual(reported.get(subject), [...fields].sort(), subject);
    }
    // The exports carried utm_source, section and $browser, but not for
    // everyone: those whose events lacked them are not listed with them.
    const exported = new Set(report.exports.flatMap((record) => record.properties));
    for (const key of ['utm_source', 'section', '$browser']) {
      assert.ok(exported.has(key), key);
    }
    for (const index of WITHOUT_UTM) {
      assert.ok(!reported.get(pseudonymOf[index]).includes('utm_source'), `user ${index}`);
      assert.ok(reported.get(pseudonymOf[index]).includes('plan'), `user ${index}`);
    }
    for (const index of WITHOUT_SECTION) {
      assert.ok(!reported.get(pseudonymOf[index]).includes('section'), `user ${index}`);
      assert.ok(!reported.get(pseudonymOf[index]).includes('$browser'), `user ${index}`);
      assert.ok(reported.get(pseudonymOf[index]).includes('$os'), `user ${index}`);
    }
    assert.ok(reported.get(pseudonymOf[4]).includes('utm_source') && reported.get(pseudonymOf[4]).includes('section'));
    assert.ok(report.subjects.every((subject) => subject.fields_exact === true));
    // Users 9-11 only through the query's answer: its record, no export.
    for (const subject of report.subjects) {
      assert.deepEqual(subject.queries, queried.has(subject.subject) ? [listing[0].seq] : [], subject.subject);
      assert.equal(subject.exports.length === 0, queried.has(subject.subject), subject.subject);
    }
    for (let index = 9; index < USERS; index += 1) {
      assert.deepEqual(reported.get(pseudonymOf[index]), ['currency', 'distinct_id', 'time'], `user ${index}`);
    }
    // The whole chain walked (--verify-chain) gives the same report.
    const full = path.join(dir, 'full');
    await blast(full, ['--verify-chain']);
    const walked = JSON.parse(fs.readFileSync(path.join(full, 'blast-radius.json'), 'utf8'));
    assert.equal(walked.chain.mode, 'full');
    assert.equal(walked.chain.records_walked, walked.chain.records);
    assert.deepEqual(walked.subjects, report.subjects);
    assert.deepEqual(walked.exports, report.exports);
    const both = report.subjects.filter((subject) => subject.exports.length === 2);
    assert.equal(both.length, 3);  // users 3-5: in signups and pages
    for (const subject of report.subjects) {
      assert.ok(subject.categories.includes('internal_ids'));
      assert.equal(subject.categories.includes('device'),
        subject.properties.includes('$browser') || subject.properties.includes('$os'));
    }

    // The accounts: every user (0-8 exported, 9-11 listed by the query), by
    // their own ids, with notices.
    const impact = JSON.parse(fs.readFileSync(path.join(out, 'impact.json'), 'utf8'));
    assert.deepEqual(impact.accounts.map((account) => account.user_id).sort(),
      Array.from({ length: USERS }, (_, index) => userId(index)).sort());
    assert.equal(impact.counts.leaked_rows_unmatched, 0);
    const notices = fs.readdirSync(path.join(out, 'notices', 'users'));
    assert.equal(notices.length, USERS);
    const spanish = fs.readFileSync(path.join(out, 'notices', 'users', notices[1]), 'utf8');
    assert.doesNotMatch(spanish, /https?:\/\//);
    for (const file of ['blast-radius.json', 'impact.json', 'summary.md', 'summary.html']) {
      assert.equal(fs.statSync(path.join(out, file)).mode & 0o777, 0o600, file);
    }
    // No raw id reaches the summary that has no accounts file behind it.
    const bare = path.join(dir, 'bare');
    await blast(bare, ['--no-notices']);
    const bareText = fs.readFileSync(path.join(bare, 'blast-radius.json'), 'utf8')
      + fs.readFileSync(path.join(bare, 'impact.json'), 'utf8');
    assert.doesNotMatch(bareText, /gen-blast-/);
  });

  it('who-could-read lists the keys that reach a subject and the exports that carried it', async () => {
    const { stdout } = await runCli(['incident', 'who-could-read', '--subject', userId(4), '--project', 'blast-it', ...dataArgs()]);
    const who = JSON.parse(stdout);
    assert.equal(who.chain.ok, true);
    const byKey = new Map(who.keys.map((key) => [key.key, key]));
    assert.equal(byKey.get(keys.compromised.id).reach, 'raw events');
    assert.equal(byKey.get(keys.compromised.id).exported_in.length, 2);
    assert.equal(byKey.get(keys.other.id).exported_in.length, 1);  // its signup export
    assert.equal(byKey.get(keys.aggregate.id).reach, 'aggregates only');
    assert.equal(byKey.get(keys.aggregate.id).exported_in.length, 0);
    assert.ok(byKey.has(`secret:${server.project.id}`));
    assert.ok(who.subjects.every((subject) => /^psn_[0-9a-f]{32}$/.test(subject)));
  });

  it('who-could-read lists the queries whose answers listed a subject, on both faces', async () => {
    // User 10's user_id was a label of the compromised key's purchases-by-
    // user_id answer (in the window): that query's record is named, with
    // the purchase exports before and after the window and the other key's.
    const cli = JSON.parse((await runCli(['incident', 'who-could-read', '--subject', userId(10), '--project', 'blast-it',
      ...dataArgs()])).stdout);
    const res = await server.request({
      method: 'POST', path: '/api/incident/who-could-read',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' }, body: JSON.stringify({ distinct_id: userId(10) }),
    });
    assert.equal(res.status, 200, res.text);
    const served = JSON.parse(res.text);
    for (const who of [cli, served]) {
      const byKey = new Map(who.keys.map((key) => [key.key, key]));
      assert.equal(byKey.get(keys.compromised.id).queried_in.length, 1, JSON.stringify(who));
      assert.equal(byKey.get(keys.compromised.id).exported_in.length, 2);
      assert.equal(byKey.get(keys.other.id).queried_in.length, 0);
      assert.equal(byKey.get(keys.other.id).exported_in.length, 1);
      assert.equal(byKey.get(keys.aggregate.id).queried_in.length, 0);
      assert.deepEqual(who.other_queries, []);
    }
    assert.deepEqual(served.keys.map(({ events_in_reach: _, ...key }) => key), cli.keys);
    // The record named is the query that listed subjects, with its subject file.
    const { stdout } = await runCli(['audit', 'tail', '--limit', '1000', ...dataArgs()]);
    const seq = cli.keys.find((key) => key.key === keys.compromised.id).queried_in[0];
    const record = stdout.trim().split('\n').map((line) => JSON.parse(line)).find((entry) => entry.seq === seq);
    assert.ok(record, `record ${seq} in audit tail`);
    assert.equal(record.act, 'query');
    assert.ok(record.subjects_file, JSON.stringify(record));
    // User 4 was in no answer that listed subjects.
    const four = JSON.parse((await runCli(['incident', 'who-could-read', '--subject', userId(4), '--project', 'blast-it',
      ...dataArgs()])).stdout);
    assert.ok(four.keys.every((key) => key.queried_in.length === 0));
  });

  it('the running server answers who-could-read itself, the store included (POST /api/incident/who-could-read)', async () => {
    const ask = (body, secret) => server.request({
      method: 'POST', path: '/api/incident/who-could-read',
      headers: { ...server.authHeader(secret), 'Content-Type': 'application/json' }, body: JSON.stringify(body),
    });
    const res = await ask({ distinct_id: userId(4) });
    assert.equal(res.status, 200, res.text);
    const who = JSON.parse(res.text);
    assert.equal(who.format, 'minpanel-incident-who-could-read');
    // The command line, while the server holds the folder, cannot read the
    // store and names the route; the keys and exports are the same.
    const cli = JSON.parse((await runCli(['incident', 'who-could-read', '--subject', userId(4), '--project', 'blast-it',
      ...dataArgs()])).stdout);
    assert.equal(cli.store.consulted, false);
    assert.match(cli.store.not_consulted, /POST \/api\/incident\/who-could-read/);
    assert.deepEqual(who.subjects, cli.subjects);
    assert.deepEqual(who.keys.map(({ events_in_reach: _, ...key }) => key), cli.keys);
    assert.deepEqual(who.other_exports, cli.other_exports);
    const byKey = new Map(who.keys.map((key) => [key.key, key]));
    assert.equal(byKey.get(keys.compromised.id).exported_in.length, 2);
    assert.equal(byKey.get(keys.other.id).exported_in.length, 1);
    // What the store holds of user 4, from the server's own snapshot: a
    // signup and a page, both at base + 4; every key here reaches both.
    assert.equal(who.store.consulted, true);
    assert.equal(who.store.events, 2);
    assert.deepEqual(who.store.events_by_name, { page: 1, signup: 1 });
    assert.equal(who.store.first_event_ms, (eventsBaseSeconds + 4) * 1000);
    assert.equal(who.store.last_event_ms, (eventsBaseSeconds + 4) * 1000);
    assert.equal(who.store.profile_updates, 0);
    for (const key of who.keys) {
      assert.equal(key.events_in_reach, 2, key.key);
    }
    assert.ok(!who.warnings.some((warning) => /not consulted/.test(warning.message)), res.text);
    // A window before any key existed: no key could read, no export carried it.
    const early = await ask({ distinct_id: userId(4), from: '2020-01-01T00:00:00Z', to: '2020-01-02T00:00:00Z' });
    assert.equal(early.status, 200, early.text);
    assert.deepEqual(JSON.parse(early.text).keys, []);
    // A subject the store never held: counted as nothing, with a warning.
    const never = JSON.parse((await ask({ distinct_id: 'gen-blast-never-seen' })).text);
    assert.equal(never.store.events, 0);
    assert.ok(never.warnings.some((warning) => /the store holds no event or profile update/.test(warning.message)));

    // Bad input: 400 naming the field (and the id never echoed).
    for (const [body, field] of [
      [{}, /distinct_id: required/],
      [{ distinct_id: '' }, /distinct_id: required/],
      [{ distinct_id: 7 }, /distinct_id: required/],
      [{ distinct_id: userId(4), subject: 'x' }, /unknown field 'subject'/],
      [{ distinct_id: userId(4), from: 'yesterday' }, /from/],
      [{ distinct_id: userId(4), from: '2026-11-20T11:00:00Z', to: '2026-11-20T10:00:00Z' }, /from: must be before to/],
      [{ distinct_id: userId(4), allow_broken: 'yes' }, /allow_broken: expected true or false/],
      [{ distinct_id: 'x'.repeat(5000) }, /kSubjectIdBytesMax/],
    ]) {
      const refused = await ask(body);
      assert.ok(refused.status === 400 || refused.status === 413, `${JSON.stringify(body).slice(0, 80)}: ${refused.text}`);
      assert.match(JSON.parse(refused.text).error, field);
      assert.doesNotMatch(refused.text, /gen-blast-4/);
    }
    const notJson = await server.request({ method: 'POST', path: '/api/incident/who-could-read',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' }, body: 'nope' });
    assert.equal(notJson.status, 400, notJson.text);
    // An export key is not an admin key: 403 naming the scope.
    const denied = await ask({ distinct_id: userId(4) }, keys.compromised.secret);
    assert.equal(denied.status, 403, denied.text);
    assert.match(JSON.parse(denied.text).error, /'admin'/);

    // Each answer is in the audit log as the command line's runs are, with
    // the credential and the route, the keys listed, never the id.
    const audited = await server.request({ path: '/api/audit?act=incident.who_could_read&limit=1000', headers: server.authHeader() });
    assert.equal(audited.status, 200, audited.text);
    const served = JSON.parse(audited.text).filter((record) => record.route === '/api/incident/who-could-read');
    assert.equal(served.length, 4);  // with the previous test's (user 10)
    for (const record of served) {
      assert.equal(record.key, `secret:${server.project.id}`);
      assert.deepEqual(record.projects, [server.project.id]);
    }
    assert.deepEqual(served.map((record) => record.rows).sort(),
      [0, who.keys.length, who.keys.length, who.keys.length].sort());
    assert.doesNotMatch(audited.text, /gen-blast-|psn_/);
  });

  it('refuses an output inside the data folder, a backwards window and a broken chain; records its runs', async () => {
    let error = await failure(['incident', 'blast-radius', '--key', keys.compromised.id, '--from', '2026-11-20T10:00:00Z',
      '--to', '2026-11-20T11:00:00Z', ...dataArgs(), '--out', path.join(server.dataDir, 'incident'),
      '--company', 'Example Ltd', '--domain', 'example.com']);
    assert.match(error.stderr, /inside the data folder/);
    error = await failure(['incident', 'blast-radius', '--key', keys.compromised.id, '--from', '2026-11-20T11:00:00Z',
      '--to', '2026-11-20T10:00:00Z', ...dataArgs(), '--out', path.join(dir, 'backwards'),
      '--company', 'Example Ltd', '--domain', 'example.com']);
    assert.match(error.stderr, /--from must be before --to/);

    await server.stop();
    await blast(path.join(dir, 'recorded'));
    const { stdout } = await runCli(['audit', 'show', '--act', 'incident.', ...dataArgs()]);
    const records = stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
    // Three blast radius runs while the server ran (queued, appended by it)
    // and this one; every who-could-read run while it ran: the command
    // line's (USERS + 4) and the server's answers (4).
    const blasts = records.filter((record) => record.act === 'incident.blast_radius');
    assert.equal(blasts.length, 4);
    for (const record of blasts) {
      assert.equal(record.target, keys.compromised.id);
      assert.equal(record.subjects, 12);
      assert.equal(record.key, 'local');
    }
    const whoRuns = records.filter((record) => record.act === 'incident.who_could_read');
    assert.equal(whoRuns.filter((record) => record.route === 'cli').length, USERS + 4);
    assert.equal(whoRuns.filter((record) => record.route === '/api/incident/who-could-read').length, 4);
    assert.doesNotMatch(stdout, /gen-blast-|psn_/);

    // With the server stopped, who-could-read also says what the store
    // holds of the person: user 3 has a signup and a page, both at base + 3.
    const held = JSON.parse((await runCli(['incident', 'who-could-read', '--subject', userId(3),
      '--project', 'blast-it', ...dataArgs()])).stdout);
    assert.equal(held.store.consulted, true);
    assert.equal(held.store.events, 2);
    assert.deepEqual(held.store.events_by_name, { page: 1, signup: 1 });
    assert.equal(held.store.first_event_ms, (eventsBaseSeconds + 3) * 1000);
    assert.equal(held.store.last_event_ms, (eventsBaseSeconds + 3) * 1000);
    assert.equal(held.store.first_event, new Date((eventsBaseSeconds + 3) * 1000).toISOString().replace('.000Z', 'Z'));
    const exporters = held.keys.filter((key) => key.reach === 'raw events');
    assert.ok(exporters.length >= 2);
    for (const key of held.keys) {
      assert.equal(key.events_in_reach, 2, key.key);  // no key here is limited to some events
    }
    const absent = JSON.parse((await runCli(['incident', 'who-could-read', '--subject', 'gen-blast-never-seen',
      '--project', 'blast-it', ...dataArgs()])).stdout);
    assert.equal(absent.store.consulted, true);
    assert.equal(absent.store.events, 0);
    assert.equal(absent.store.first_event, '');
    assert.ok(absent.warnings.some((warning) => /the store holds no event or profile update/.test(warning.message)));

    // An edit to one of the key's own records: the indexed run reads it
    // where it lies, finds that it does not check, and falls back to the
    // whole chain, which refuses it, naming it.
    const log = path.join(server.dataDir, 'audit', 'log');
    const original = fs.readFileSync(log);
    const recorded = JSON.parse(fs.readFileSync(path.join(dir, 'recorded', 'blast-radius.json'), 'utf8'));
    assert.equal(recorded.chain.mode, 'index');
    const own = recorded.exports[0].seq;
    const edited = Buffer.from(original);
    let offset = 16;
    for (let seq = 1; seq < own; seq += 1) {
      offset += 4 + edited.readUInt32LE(offset) + 32;
    }
    edited[offset + 4 + 10] ^= 0x01;
    fs.writeFileSync(log, edited);
    error = await failure(['incident', 'blast-radius', '--key', keys.compromised.id,
      '--from', new Date(window.from).toISOString(), '--to', new Date(window.to).toISOString(), ...dataArgs(),
      '--out', path.join(dir, 'broken-own'), '--company', 'Example Ltd', '--domain', 'example.com']);
    assert.match(error.stderr, new RegExp(`chain is broken: record ${own} `));

    // An edited byte in record 1 (not the key's). An indexed run checks only
    // the key's records and those after the index (docs/formats/audit.md),
    // so it does not see it; the whole chain (--verify-chain) refuses it,
    // naming the record, and --allow-broken reports the prefix and says so.
    // (The refused run above walked the whole chain, making the index anew
    // up to the break: the intact log gets a new index first.)
    fs.writeFileSync(log, original);
    const reindexed = await blast(path.join(dir, 'reindexed'));
    assert.match(reindexed.stderr, /index rebuilt/);
    const first = fs.readFileSync(log);
    first[40] ^= 0x01;
    fs.writeFileSync(log, first);
    const indexed = await blast(path.join(dir, 'broken-indexed'));
    assert.match(indexed.stderr, /key index/);
    error = await failure(['incident', 'blast-radius', '--key', keys.compromised.id,
      '--from', new Date(window.from).toISOString(), '--to', new Date(window.to).toISOString(), ...dataArgs(),
      '--out', path.join(dir, 'broken'), '--company', 'Example Ltd', '--domain', 'example.com', '--verify-chain']);
    assert.match(error.stderr, /chain is broken: record 1 /);
    const { stderr } = await blast(path.join(dir, 'broken-allowed'), ['--allow-broken', '--verify-chain']);
    assert.match(stderr, /ONLY THE 0 RECORDS BEFORE THE BREAK/);
    // The full walk made the index anew and stopped at the break: no index
    // is left, so an indexed run now walks the whole chain and refuses too.
    error = await failure(['incident', 'blast-radius', '--key', keys.compromised.id,
      '--from', new Date(window.from).toISOString(), '--to', new Date(window.to).toISOString(), ...dataArgs(),
      '--out', path.join(dir, 'broken-again'), '--company', 'Example Ltd', '--domain', 'example.com']);
    assert.match(error.stderr, /chain is broken: record 1 /);
  });
});
