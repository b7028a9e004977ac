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
// $anon_distinct_id.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, randomTag, PSEUDONYM_RE, sleep, requireFromNpm } from './harness.mjs';

function today() {
  return new Date().toISOString().slice(0, 10);
}
function tomorrow() {
  return new Date(Date.now() + 24 * 3600 * 1000).toISOString().slice(0, 10);
}

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
    kind: 'funnel', from: today(), to: tomorrow(),
    steps: [`${VIEWED} ${flow}`, `${SIGNED} ${flow}`, `${BOUGHT} ${flow}`],
  })).steps.map((step) => step.subjects);
  const uniques = async (flow) => (await ask({
    kind: 'segmentation', from: today(), to: tomorrow(), unit: 'day', measure: 'unique',
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

    const rows = (await server.exportEvents({ fromDate: today() })).filter((row) => row.properties.flow === 'seg');
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

    const rows = (await server.exportEvents({ fromDate: today() })).filter((row) => row.event === '$create_alias');
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
      kind: 'retention', from: today(), to: tomorrow(), unit: 'day', periods: 1,
      birth: `${VIEWED} ph`, return: `${BOUGHT} ph`,
    });
    assert.equal(retention.size, 1, JSON.stringify(retention));
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
