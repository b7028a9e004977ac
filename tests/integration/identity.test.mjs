// Identity merging end to end (docs/identity.md): real SDKs send anonymous
// events, then identify or alias, then identified events, to the real
// minpanel binary; POST /api/query then counts each person once — in a
// funnel across the sign-up, in unique counts and in retention — and the
// export names the person beside the id each event was sent with
// (pseudonymised); /metrics counts the links and merges.
//
// @segment/analytics-node: track with anonymousId, identify with both ids,
// track with userId. posthog-node: capture as an anonymous id, alias it to
// the user, capture as the user; a chain of three ids (anon -> second anon ->
// user); and two devices of one user. posthog-node: identify with
// $anon_distinct_id. Then, on a server that flushes every two events, the
// same flow once compaction has folded the anonymous id's rows into the
// person's (docs/identity.md, "Folded segments"), and an erasure of the
// anonymous id that takes only its own rows from inside the person's.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, randomTag, PSEUDONYM_RE, sleep, requireFromNpm, runCli, listFiles, isoDate } from './harness.mjs';

// The SDKs stamp the events with the time they send them: queries and
// exports start yesterday, so that a run that passes midnight UTC between a
// flow's events, or between them and the query, still finds them all.
const queryFrom = () => isoDate(-1);
const queryTo = () => isoDate(1);

describe('identity merging with real SDKs', () => {
  const { Analytics } = requireFromNpm('@segment/analytics-node');
  const { PostHog } = requireFromNpm('posthog-node');
  const run = randomTag('id');
  // Event names of this run: each flow its own, so the answers are exact.
  const VIEWED = `Viewed ${run}`;
  const SIGNED = `Signed Up ${run}`;
  const BOUGHT = `Purchased ${run}`;
  let server;
  const sdkErrors = [];
  // Each request's time is corrected by its own sent_at / sentAt skew (the
  // server's receive time minus the client's send time), so on a loaded
  // machine two requests' times can move apart by their difference in
  // latency: the steps are sent well apart (as in profiles.test.mjs).
  const pause = () => sleep(300);

  const ask = async (query) => {
    const res = await server.request({
      method: 'POST', path: '/api/query',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify(query),
    });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text);
  };
  const funnel = async (flow) => (await ask({
    kind: 'funnel', from: queryFrom(), to: queryTo(),
    steps: [`${VIEWED} ${flow}`, `${SIGNED} ${flow}`, `${BOUGHT} ${flow}`],
  })).steps.map((step) => step.subjects);
  const uniques = async (flow) => (await ask({
    kind: 'segmentation', from: queryFrom(), to: queryTo(), unit: 'day', measure: 'unique',
    events: [{ any_event: true, filters: [{ property: 'flow', op: 'eq', value: flow }] }],
  })).series[0].total;

  before(async () => {
    server = await startServer({ projectName: 'identity' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('@segment/analytics-node: anonymous track, identify, identified track', async () => {
    const client = new Analytics({
      writeKey: server.project.token, host: `http://${server.host}`, flushAt: 1, flushInterval: 50, maxRetries: 0,
    });
    client.on('error', (error) => sdkErrors.push(error));
    const anon = `anon-seg-${run}`;
    const user = `user-seg-${run}`;
    client.track({ anonymousId: anon, event: `${VIEWED} seg`, properties: { flow: 'seg' } });
    await client.flush();
    await pause();
    client.identify({ anonymousId: anon, userId: user, traits: { plan: 'pro' } });
    await client.flush();
    await pause();
    client.track({ userId: user, event: `${SIGNED} seg`, properties: { flow: 'seg' } });
    await client.flush();
    await pause();
    client.track({ userId: user, event: `${BOUGHT} seg`, properties: { flow: 'seg' } });
    await client.closeAndFlush();
    assert.deepEqual(sdkErrors, []);

    const rows = (await server.exportEvents({ fromDate: queryFrom() })).filter((row) => row.properties.flow === 'seg');
    assert.equal(rows.length, 3, 'every event arrived once');
    // The export names the person (distinct_id) and, where it differs, the
    // id the event is stored under ($distinct_id_before_identity).
    const persons = new Set(rows.map((row) => row.properties.distinct_id));
    assert.equal(persons.size, 1, `the export names one person: ${JSON.stringify(rows)}`);
    const subjects = new Set(rows.map((row) => row.properties.$distinct_id_before_identity ?? row.properties.distinct_id));
    assert.equal(subjects.size, 2, 'stored under two ids (anonymousId, userId), as sent');
    for (const subject of subjects) {
      assert.match(subject, PSEUDONYM_RE);
    }
    const anonymousRow = rows.find((row) => row.event === `${VIEWED} seg`);
    assert.match(anonymousRow.properties.$distinct_id_before_identity, PSEUDONYM_RE, 'the anonymous row keeps its stored id');
    assert.equal(rows.filter((row) => row.properties.$distinct_id_before_identity !== undefined).length, 1,
      'only the anonymous row was stored under another id');
    assert.deepEqual(await funnel('seg'), [1, 1, 1], 'one person through the funnel across the identify');
    assert.equal(await uniques('seg'), 1, 'one unique person');
  });

  it('posthog-node: anonymous capture, alias to the user, identified capture; a chain of three; two devices', async () => {
    const client = new PostHog(server.project.token, {
      host: `http://${server.host}`, flushAt: 1, flushInterval: 50, fetchRetryCount: 0,
    });
    client.on('error', (error) => sdkErrors.push(error));
    const anon = `anon-ph-${run}`;
    const user = `user-ph-${run}`;
    client.capture({ distinctId: anon, event: `${VIEWED} ph`, properties: { flow: 'ph' } });
    await client.flush();
    await pause();
    client.alias({ distinctId: user, alias: anon });
    client.capture({ distinctId: user, event: `${SIGNED} ph`, properties: { flow: 'ph' } });
    await client.flush();
    await pause();
    client.capture({ distinctId: user, event: `${BOUGHT} ph`, properties: { flow: 'ph' } });
    await client.flush();
    await pause();

    // identify with $anon_distinct_id: a $identify event linking the two.
    const anonId = `anon-phid-${run}`;
    const userId = `user-phid-${run}`;
    client.capture({ distinctId: anonId, event: `${VIEWED} phid`, properties: { flow: 'phid' } });
    await client.flush();
    await pause();
    client.identify({ distinctId: userId, properties: { $anon_distinct_id: anonId } });
    client.capture({ distinctId: userId, event: `${SIGNED} phid`, properties: { flow: 'phid' } });
    await client.flush();
    await pause();
    client.capture({ distinctId: userId, event: `${BOUGHT} phid`, properties: { flow: 'phid' } });
    await client.flush();
    await pause();

    // A chain: first -> second (alias), second -> chain user (alias); one
    // step under each id.
    const first = `first-${run}`;
    const second = `second-${run}`;
    const chainUser = `chain-user-${run}`;
    client.capture({ distinctId: first, event: `${VIEWED} chain`, properties: { flow: 'chain' } });
    await client.flush();
    await pause();
    client.alias({ distinctId: second, alias: first });
    client.capture({ distinctId: second, event: `${SIGNED} chain`, properties: { flow: 'chain' } });
    await client.flush();
    await pause();
    client.alias({ distinctId: chainUser, alias: second });
    client.capture({ distinctId: chainUser, event: `${BOUGHT} chain`, properties: { flow: 'chain' } });
    await client.flush();
    await pause();

    // Two devices of one user: views on both, the purchase on the second.
    const phone = `phone-${run}`;
    const laptop = `laptop-${run}`;
    const devicesUser = `devices-user-${run}`;
    client.capture({ distinctId: phone, event: `${VIEWED} devices`, properties: { flow: 'devices' } });
    await client.flush();
    await pause();
    client.capture({ distinctId: laptop, event: `${VIEWED} devices`, properties: { flow: 'devices' } });
    await client.flush();
    await pause();
    client.alias({ distinctId: devicesUser, alias: phone });
    client.alias({ distinctId: devicesUser, alias: laptop });
    client.capture({ distinctId: devicesUser, event: `${SIGNED} devices`, properties: { flow: 'devices' } });
    await client.flush();
    await pause();
    client.capture({ distinctId: laptop, event: `${BOUGHT} devices`, properties: { flow: 'devices' } });
    await client.flush();
    await pause();
    // Someone else, never linked: counted apart.
    client.capture({ distinctId: `stranger-${run}`, event: `${VIEWED} devices`, properties: { flow: 'devices' } });
    await client.flush();
    await pause();
    await client.shutdown();
    assert.deepEqual(sdkErrors, []);

    const rows = (await server.exportEvents({ fromDate: queryFrom() })).filter((row) => row.event === '$create_alias');
    assert.equal(rows.length, 5, 'the five aliases stored');
    for (const row of rows) {
      assert.match(row.properties.alias, PSEUDONYM_RE, 'alias pseudonymised like distinct_id');
    }
    assert.deepEqual(await funnel('ph'), [1, 1, 1]);
    assert.equal(await uniques('ph'), 1);
    assert.deepEqual(await funnel('phid'), [1, 1, 1], 'identify with $anon_distinct_id');
    assert.equal(await uniques('phid'), 1);
    assert.deepEqual(await funnel('chain'), [1, 1, 1], 'a chain of three ids is one person');
    assert.equal(await uniques('chain'), 1);
    assert.deepEqual(await funnel('devices'), [2, 1, 1], 'two devices and their user are one person; the stranger another');
    assert.equal(await uniques('devices'), 2);

    const retention = await ask({
      kind: 'retention', from: queryFrom(), to: queryTo(), unit: 'day', periods: 1, mode: 'on_or_after',
      birth: `${VIEWED} ph`, return: `${BOUGHT} ph`,
    });
    assert.equal(retention.size, 1, JSON.stringify(retention));
    // on_or_after: a return the day after the birth (a run across midnight)
    // counts in period 0 too.
    assert.equal(retention.total.counts[0], 1, 'born anonymous, returned identified: retained');
  });

  it('reports the links in /metrics, as of the last query', async () => {
    assert.equal(await uniques('devices'), 2);
    const res = await server.request({ path: '/metrics', headers: server.authHeader() });
    assert.equal(res.status, 200, res.text);
    const gauge = (name, labels = '') => {
      const line = res.text.split('\n').find((text) => text.startsWith(`${name}{project="identity"${labels}} `));
      assert.ok(line, `${name}${labels} in /metrics:\n${res.text.split('\n').filter((text) => text.includes('identity')).join('\n')}`);
      return Number(line.split(' ').pop());
    };
    // seg (anonymousId), ph (alias), phid ($identify): one merge each; the
    // chain and the two devices: two each.
    assert.equal(gauge('minpanel_identity_merges'), 7);
    assert.equal(gauge('minpanel_identity_persons'), 5);
    assert.equal(gauge('minpanel_identity_person_ids_max'), 3, 'the chain of three ids');
    assert.ok(gauge('minpanel_identity_links') >= 7);
    assert.equal(gauge('minpanel_identity_links_refused', ',reason="identified"'), 0);
    assert.equal(gauge('minpanel_identity_links_refused', ',reason="limit"'), 0);
  });
});

describe('identity merging over segments folded by compaction', () => {
  const { PostHog } = requireFromNpm('posthog-node');
  const run = randomTag('fold');
  const FLOW = `Flow ${run}`;
  let server;
  before(async () => {
    // Two events per flush: today's small segments are compacted (folded)
    // as the events arrive.
    server = await startServer({ projectName: 'identity-fold', configText: 'store_memtable_rows_max = 2\n' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  const ask = async (query) => {
    const res = await server.request({
      method: 'POST', path: '/api/query',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify(query),
    });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text);
  };
  const funnel = async () => (await ask({
    kind: 'funnel', from: queryFrom(), to: queryTo(),
    steps: [`${FLOW} viewed`, `${FLOW} signed`, `${FLOW} bought`],
  })).steps.map((step) => step.subjects);
  const uniques = async () => (await ask({
    kind: 'segmentation', from: queryFrom(), to: queryTo(), unit: 'day', measure: 'unique',
    events: [{ any_event: true, filters: [{ property: 'flow', op: 'eq', value: run }] }],
  })).series[0].total;
  // The dumps of the project's segment files that say they are folded.
  const foldedDumps = async () => {
    const dumps = [];
    for (const file of await listFiles(server.dataDir)) {
      if (file.endsWith('.seg')) {
        const { stdout } = await runCli(['debug', 'dump', file], { timeoutMs: 60000 }).catch((error) => error);
        if (String(stdout).includes('folded: generation') && String(stdout).includes('stored subjects')) {
          dumps.push(stdout);
        }
      }
    }
    return dumps;
  };

  it('posthog-node: anonymous capture, alias, identified captures; folded, counted once; erasing the anonymous id', async () => {
    const sdkErrors = [];
    const client = new PostHog(server.project.token, {
      host: `http://${server.host}`, flushAt: 1, flushInterval: 50, fetchRetryCount: 0,
    });
    client.on('error', (error) => sdkErrors.push(error));
    const anon = `anon-fold-${run}`;
    const user = `user-fold-${run}`;
    client.capture({ distinctId: anon, event: `${FLOW} viewed`, properties: { flow: run } });
    await client.flush();
    await sleep(300);
    client.alias({ distinctId: user, alias: anon });
    client.capture({ distinctId: user, event: `${FLOW} signed`, properties: { flow: run } });
    await client.flush();
    await sleep(300);
    client.capture({ distinctId: user, event: `${FLOW} bought`, properties: { flow: run } });
    await client.flush();
    // Others' events, so that flushes and compactions follow the link's.
    let folded = [];
    for (let round = 0; round < 20 && folded.length === 0; ++round) {
      for (let index = 0; index < 4; ++index) {
        client.capture({ distinctId: `other-${run}-${round}-${index}`, event: `Other ${run}` });
      }
      await client.flush();
      await sleep(250);
      folded = await foldedDumps();
    }
    await client.shutdown();
    assert.deepEqual(sdkErrors, []);
    assert.ok(folded.length > 0, 'compaction wrote a folded segment');

    assert.deepEqual(await funnel(), [1, 1, 1], 'one person through the funnel across the alias');
    assert.equal(await uniques(), 1, 'one unique person');
    const rows = (await server.exportEvents({ fromDate: queryFrom() })).filter((row) => row.properties.flow === run);
    assert.equal(rows.length, 3, 'every event once');
    assert.equal(new Set(rows.map((row) => row.properties.distinct_id)).size, 1, 'the export names one person');
    // An alias names no identified side: the person is the lower of the two
    // pseudonyms, and the rows stored under the other name it beside.
    const stored = new Set(rows.map((row) => row.properties.$distinct_id_before_identity ?? row.properties.distinct_id));
    assert.equal(stored.size, 2, 'the rows keep the two ids they were stored under');

    // Erase the anonymous id alone ("linked": false): its row goes, from
    // inside the person's rows; the user's stay.
    const erase = async (body) => {
      const erased = await server.request({
        method: 'POST', path: '/api/erase',
        headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
        body: JSON.stringify({ ...body, purge: 'now' }), timeoutMs: 60000,
      });
      assert.equal(erased.status, 200, erased.text);
      return (await server.exportEvents({ fromDate: queryFrom() })).filter((row) => row.properties.flow === run);
    };
    const left = await erase({ distinct_ids: [anon], linked: false });
    assert.deepEqual(left.map((row) => row.event).sort(), [`${FLOW} bought`, `${FLOW} signed`]);
    assert.deepEqual(await funnel(), [0, 0, 0], 'the first step was the anonymous id\'s');
    assert.equal(await uniques(), 1);
    // The user, with the ids linked to it (the default): nothing is left.
    assert.deepEqual(await erase({ distinct_ids: [user] }), []);
    assert.equal(await uniques(), 0);
  });
});
