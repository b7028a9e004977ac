// Profiles and groups in queries end to end (docs/queries.md, "Profile and
// group properties"): each real SDK sets person profiles and group profiles
// and sends events that name a group, to the real minpanel binary; POST
// /api/query then filters and breaks down by those profile and group
// properties and counts unique groups.
//
// mixpanel: people.set / people.increment (/engage), groups.set (/groups),
// track with the group key property `company`. posthog-node: identify with
// properties ($set), groupIdentify ($groupidentify), capture with groups
// ($groups.company). @segment/analytics-node: identify with traits, group
// with traits (group key `groupId`), track with context.groupId.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, randomTag, requireMixpanel, quietLogger, sleep, requireFromNpm, isoDate } from './harness.mjs';

function callback(fn) {
  return new Promise((resolve, reject) => {
    fn((error) => {
      if (error && (!Array.isArray(error) || error.length > 0)) {
        reject(new Error(`SDK reported: ${Array.isArray(error) ? error.map((item) => item.message).join('; ') : error.message}`));
      } else {
        resolve();
      }
    });
  });
}

// series of a breakdown answer as { value: total }.
function byBreakdown(answer) {
  const totals = {};
  for (const series of answer.series) {
    totals[series.other ? 'other' : String(series.breakdown[0])] = series.total;
  }
  return totals;
}

describe('profile and group properties in queries, with real SDKs', () => {
  const { Analytics } = requireFromNpm('@segment/analytics-node');
  const { PostHog } = requireFromNpm('posthog-node');
  const Mixpanel = requireMixpanel();
  const run = randomTag('prof');
  let server;

  const ask = async (query) => {
    const res = await server.request({
      method: 'POST', path: '/api/query',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify(query),
    });
    assert.equal(res.status, 200, res.text);
    return JSON.parse(res.text);
  };
  // The SDKs stamp the events with the time they send them: the range starts
  // yesterday, so that a run that passes midnight UTC between the events, or
  // between them and the query, still finds them all.
  const range = () => ({ from: isoDate(-1), to: isoDate(1) });
  const plan = { property: 'plan', source: 'profile' };

  before(async () => {
    server = await startServer({ projectName: 'profiles' });
  });
  after(async () => {
    if (server) {
      if (server.exits.length > 0) {
        console.error(`minpanel exited: ${JSON.stringify(server.exits)}; stderr tail:\n${server.stderr.slice(-4000)}`);
      }
      await server.cleanup();
    }
  });

  it('mixpanel: people.set and groups.set, then breakdowns, filters and unique groups', async () => {
    const client = Mixpanel.init(server.project.token, {
      protocol: 'http', host: server.host, key: server.project.secret, logger: quietLogger,
    });
    const [pro, free, none] = ['pro', 'free', 'none'].map((name) => `mp-${name}-${run}`);
    const acme = `acme-${run}`;
    const globex = `globex-${run}`;
    await callback((cb) => client.people.set(pro, { plan: 'pro' }, cb));
    await callback((cb) => client.people.increment(pro, { logins: 3 }, cb));
    await callback((cb) => client.people.set(free, { plan: 'free' }, cb));
    await callback((cb) => client.groups.set('company', acme, { industry: 'retail' }, cb));
    await callback((cb) => client.groups.set('company', globex, { industry: 'energy' }, cb));
    const bought = `Bought mp ${run}`;
    for (const [user, company] of [[pro, acme], [pro, acme], [free, acme], [none, globex]]) {
      await callback((cb) => client.track(bought, { distinct_id: user, company }, cb));
    }

    const byPlan = await ask({ kind: 'segmentation', ...range(), events: [bought], breakdown: plan });
    assert.deepEqual(byBreakdown(byPlan), { pro: 2, free: 1, null: 1 }, JSON.stringify(byPlan));
    const byIndustry = await ask({
      kind: 'segmentation', ...range(), events: [bought],
      breakdown: [{ property: 'industry', source: 'group', group_key: 'company' }],
    });
    assert.deepEqual(byBreakdown(byIndustry), { retail: 3, energy: 1 }, JSON.stringify(byIndustry));
    const logins = await ask({
      kind: 'segmentation', ...range(), measure: 'unique',
      events: [{ event: bought, filters: [{ property: 'logins', source: 'profile', op: 'ge', value: 3 }] }],
    });
    assert.equal(logins.series[0].total, 1, JSON.stringify(logins));
    const groups = await ask({
      kind: 'segmentation', ...range(), events: [bought], measure: { type: 'unique', group_key: 'company' },
    });
    assert.equal(groups.series[0].total, 2, JSON.stringify(groups));
  });

  it('posthog-node: identify and groupIdentify, then a funnel by plan and by industry', async () => {
    const client = new PostHog(server.project.token, {
      host: `http://${server.host}`, flushAt: 1, flushInterval: 50, fetchRetryCount: 0,
    });
    const errors = [];
    client.on('error', (error) => errors.push(error));
    const [pro, free] = ['pro', 'free'].map((name) => `ph-${name}-${run}`);
    const acme = `ph-acme-${run}`;
    client.identify({ distinctId: pro, properties: { plan: 'pro' } });
    client.identify({ distinctId: free, properties: { plan: 'free' } });
    client.groupIdentify({ groupType: 'company', groupKey: acme, properties: { industry: 'retail' } });
    await client.flush();
    const viewed = `Viewed ph ${run}`;
    const paid = `Paid ph ${run}`;
    for (const user of [pro, free]) {
      client.capture({ distinctId: user, event: viewed, groups: { company: acme } });
    }
    await client.flush();
    // Each request's times are corrected by its own sent_at skew, which
    // varies on a loaded machine: the later step is sent well after.
    await sleep(500);
    client.capture({ distinctId: pro, event: paid, groups: { company: acme } });
    await client.shutdown();
    assert.deepEqual(errors, []);

    const funnel = await ask({ kind: 'funnel', ...range(), steps: [viewed, paid], breakdown: plan });
    const steps = Object.fromEntries(funnel.groups.map((group) => [group.breakdown[0], group.steps.map((step) => step.subjects)]));
    assert.deepEqual(steps, { pro: [1, 1], free: [1, 0] }, JSON.stringify(funnel));
    const retail = await ask({
      kind: 'funnel', ...range(),
      steps: [{ event: viewed, filters: [{ property: 'industry', source: 'group', group_key: 'company', op: 'eq', value: 'retail' }] }, paid],
    });
    assert.deepEqual(retail.steps.map((step) => step.subjects), [2, 1], JSON.stringify(retail));
  });

  it('@segment/analytics-node: identify and group traits, then retention by plan and industry', async () => {
    const client = new Analytics({
      writeKey: server.project.token, host: `http://${server.host}`, flushAt: 1, flushInterval: 50, maxRetries: 0,
    });
    const errors = [];
    client.on('error', (error) => errors.push(error));
    const [pro, free] = ['pro', 'free'].map((name) => `seg-${name}-${run}`);
    const acme = `seg-acme-${run}`;
    client.identify({ userId: pro, traits: { plan: 'pro' } });
    client.identify({ userId: free, traits: { plan: 'free' } });
    client.group({ userId: pro, groupId: acme, traits: { industry: 'retail' } });
    await client.flush();
    const signed = `Signed seg ${run}`;
    const used = `Used seg ${run}`;
    for (const user of [pro, free]) {
      client.track({ userId: user, event: signed, context: { groupId: acme } });
    }
    await client.flush();
    // Each request's times are corrected by its own sent_at skew, which
    // varies on a loaded machine: the later step is sent well after.
    await sleep(500);
    client.track({ userId: pro, event: used, context: { groupId: acme } });
    await client.closeAndFlush();
    assert.deepEqual(errors, []);

    const retention = await ask({
      kind: 'retention', ...range(), periods: 1, mode: 'on_or_after', birth: signed, return: used, breakdown: plan,
    });
    // on_or_after: a return the day after the birth (a run across midnight)
    // counts in period 0 too.
    const sizes = Object.fromEntries(retention.groups.map((group) => [group.breakdown[0], [group.size, group.total.counts[0]]]));
    assert.deepEqual(sizes, { pro: [1, 1], free: [1, 0] }, JSON.stringify(retention));
    const byIndustry = await ask({
      kind: 'segmentation', ...range(), events: [signed], measure: 'unique',
      breakdown: { property: 'industry', source: 'group', group_key: 'groupId' },
    });
    assert.deepEqual(byBreakdown(byIndustry), { retail: 2 }, JSON.stringify(byIndustry));
  });

  it('a bad source is a 400 naming the field', async () => {
    const res = await server.request({
      method: 'POST', path: '/api/query',
      headers: { ...server.authHeader(), 'Content-Type': 'application/json' },
      body: JSON.stringify({
        kind: 'segmentation', ...range(), events: ['x'], breakdown: { property: 'plan', source: 'people' },
      }),
    });
    assert.equal(res.status, 400, res.text);
    assert.match(JSON.parse(res.text).error, /^breakdown\.source: unknown source 'people'/);
  });
});
