// `minpanel incident crossref` end to end (issue 7, starting point 2): the
// real binary on a generated leaked analytics export (CSV, and JSON lines
// of Mixpanel's nested shape) against a generated accounts file with
// organisations and admins. Every count is checked against the generator's
// ground truth (bench/incident_generate.mjs); the notices for content and
// for the anti-phishing rules; every output file is private.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { runCli } from './harness.mjs';
import { generate, write } from '../../bench/incident_generate.mjs';

const ACCOUNTS = 2000;
const LEAKED = 3000;

async function crossref(dir, leakedFile, out, extra = []) {
  return runCli(['incident', 'crossref', '--leaked', path.join(dir, leakedFile),
    '--accounts', path.join(dir, 'accounts.csv'), '--orgs', path.join(dir, 'orgs.csv'),
    '--out', out, '--company', 'Example Ltd', '--domain', 'example.com',
    '--contact', 'dpo@example.com', '--detected', '2026-11-20T10:00:00Z',
    '--contained', '2026-11-21T08:00:00+01:00', '--measure', 'Vendor access revoked', ...extra]);
}

async function failure(args) {
  try {
    await runCli(args);
  } catch (error) {
    return error;
  }
  assert.fail(`minpanel ${args.join(' ')} succeeded`);
}

function checkAgainstTruth(impact, truth) {
  const counts = impact.counts;
  assert.equal(counts.leaked_rows_seen, truth.leaked_rows + truth.rejected);
  assert.equal(counts.leaked_rows_rejected, truth.rejected);
  assert.equal(counts.leaked_rows_matched_account, truth.matched_rows);
  assert.equal(counts.leaked_rows_matched_org_only, truth.org_only_rows);
  assert.equal(counts.leaked_rows_unmatched, truth.unmatched_rows);
  // Every row is matched, org-only, unmatched or rejected: the counts add up.
  assert.equal(counts.leaked_rows_matched_account + counts.leaked_rows_matched_org_only +
    counts.leaked_rows_unmatched + counts.leaked_rows_rejected, counts.leaked_rows_seen);
  assert.deepEqual(counts.leaked_rows_by_method, truth.by_method);
  assert.deepEqual(impact.accounts.map((a) => a.user_id), truth.affected_accounts);
  assert.deepEqual(impact.organisations.map((o) => o.org_id).sort(), truth.affected_orgs);
  const byCountry = Object.fromEntries(counts.accounts_by_country.map((c) => [c.country, c.accounts]));
  assert.deepEqual(byCountry, truth.by_country);
  assert.equal(impact.unmatched_rows.length, truth.unmatched_rows);
  // Version 2: each account names its exposure, listed once; the accounts'
  // exposures add up to the counts by category.
  assert.equal(impact.version, 2);
  assert.deepEqual(impact.exposures.map((e) => e.exposure), impact.exposures.map((_, i) => i));
  const distinct = new Set(impact.exposures.map((e) => JSON.stringify([e.exposed, e.exposed_columns])));
  assert.equal(distinct.size, impact.exposures.length);
  const byCategory = {};
  for (const account of impact.accounts) {
    const exposure = impact.exposures[account.exposure];
    assert.ok(exposure, `account ${account.user_id}: exposure ${account.exposure}`);
    for (const category of exposure.exposed) {
      byCategory[category] = (byCategory[category] ?? 0) + 1;
    }
    assert.equal(account.not_exposed, undefined);
  }
  assert.deepEqual(byCategory, counts.accounts_by_category);
}

describe('incident crossref', () => {
  let dir;
  let truth;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minpanel-incident-'));
    const data = generate({ accounts: ACCOUNTS, leaked: LEAKED, seed: 11 });
    truth = write(dir, data, 'csv');
    write(dir, data, 'jsonl');
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('CSV: every count matches the ground truth and the outputs are private', async () => {
    const out = path.join(dir, 'out-csv');
    const { stderr } = await crossref(dir, 'leaked.csv', out);
    assert.match(stderr, /leaked\.email: email \(name_and_content/);
    const impact = JSON.parse(fs.readFileSync(path.join(out, 'impact.json'), 'utf8'));
    checkAgainstTruth(impact, truth);
    assert.deepEqual(impact.not_in_file, ['credentials', 'payment', 'content']);
    assert.equal(impact.timeline.regulator_deadline, '2026-11-23T10:00:00Z');
    assert.equal(impact.timeline.contained, '2026-11-21T07:00:00Z');
    const rejected = impact.files.leaked.rejected;
    assert.equal(rejected.length, truth.rejected);
    assert.match(rejected[0].reason, /3 fields, the header 12/);
    assert.equal((fs.statSync(out).mode & 0o777), 0o700);
    const files = fs.readdirSync(out, { recursive: true });
    for (const file of files) {
      const stat = fs.statSync(path.join(out, file));
      if (stat.isFile()) {
        assert.equal(stat.mode & 0o777, 0o600, file);
      }
    }
    // An account matched by user id and email; one matched by plus-addressing says so.
    const byPlus = impact.accounts.find((a) => a.matched_by.includes('email_plus_address'));
    assert.ok(byPlus);
    const byDots = impact.accounts.find((a) => a.matched_by.includes('email_gmail_dots'));
    assert.ok(byDots.email.endsWith('@gmail.com'));
  });

  it('JSON lines of a nested analytics shape give the same answer', async () => {
    const out = path.join(dir, 'out-jsonl');
    const { stderr } = await crossref(dir, 'leaked.jsonl', out, ['--no-notices']);
    assert.match(stderr, /leaked\.properties\.distinct_id: user_id/);
    assert.match(stderr, /leaked\.properties\.company\.id: org_id/);
    const impact = JSON.parse(fs.readFileSync(path.join(out, 'impact.json'), 'utf8'));
    checkAgainstTruth(impact, truth);
    assert.equal(impact.files.leaked.format, 'json_lines');
    assert.ok(!fs.existsSync(path.join(out, 'notices')));
  });

  it('notices: one per affected person and per admin, their own data only, no links, asks for nothing', async () => {
    const out = path.join(dir, 'out-csv');
    const impact = JSON.parse(fs.readFileSync(path.join(out, 'impact.json'), 'utf8'));
    const users = fs.readdirSync(path.join(out, 'notices/users'));
    assert.equal(users.length, truth.affected_accounts.length);
    const merge = fs.readFileSync(path.join(out, 'notices/mail-merge.csv'), 'utf8').trim().split('\r\n');
    const admins = fs.readdirSync(path.join(out, 'notices/admins'));
    assert.equal(merge.length, 1 + users.length + admins.length);
    assert.ok(admins.length >= truth.affected_orgs.length);
    const accountsByEmail = new Map(impact.accounts.map((a) => [a.email, a]));
    for (const file of users.slice(0, 200)) {
      const text = fs.readFileSync(path.join(out, 'notices/users', file), 'utf8');
      const to = /^To: <([^>]+)>\r$/m.exec(text)[1];
      const account = accountsByEmail.get(to);
      assert.ok(account, `a notice to ${to}, who is not an affected account`);
      assert.match(text, /^From: Example Ltd <security@example\.com>\r$/m);
      assert.match(text, /^Content-Type: text\/plain; charset=utf-8\r$/m);
      assert.doesNotMatch(text, /:\/\/|www\.|href|<a /i, 'no links');
      assert.doesNotMatch(text, /click|reply with your|enter your password|confirm your/i);
      const spanish = text.includes('Hola');
      if (spanish) {
        assert.match(text, /escribe tú mismo example\.com/);
        assert.match(text, /Nunca te pediremos tu contraseña/);
        assert.match(text, /autenticación multifactor/);
      } else {
        assert.match(text, /type example\.com yourself/);
        assert.match(text, /never ask you for your password/);
        assert.match(text, /multi-factor authentication/);
        assert.match(text, /your email address/);
        assert.match(text, /The file holds no payment data/);
        // The leaked file has no phone column: the notice does not claim one.
        assert.doesNotMatch(text, /phone number\n/);
      }
    }
    const adminText = fs.readFileSync(path.join(out, 'notices/admins', admins[0]), 'utf8');
    assert.match(adminText, /Users of your organisation affected: \d+|Usuarios de tu organización afectados: \d+/);
    assert.doesNotMatch(adminText, /:\/\//);
    const report = fs.readFileSync(path.join(out, 'regulator-report.md'), 'utf8');
    assert.match(report, new RegExp(`Approximate number of data subjects concerned: ${truth.affected_accounts.length} accounts`));
    assert.match(report, /Vendor access revoked/);
    const html = fs.readFileSync(path.join(out, 'summary.html'), 'utf8');
    assert.doesNotMatch(html, /:\/\/|<script|<link|<img/);
  });

  it('bad input: a file with no recognisable key column, a link as contact, an output folder in use', async () => {
    const odd = path.join(dir, 'odd.csv');
    fs.writeFileSync(odd, 'colour,size\nred,3\nblue,4\n');
    const base = ['incident', 'crossref', '--accounts', path.join(dir, 'accounts.csv'),
      '--company', 'Example Ltd', '--domain', 'example.com'];
    const noKey = await failure([...base, '--leaked', odd, '--out', path.join(dir, 'out-odd')]);
    assert.equal(noKey.code, 1);
    assert.match(noKey.stderr, /no column recognised as user_id, email or org_id; name one with --map/);
    const mapped = path.join(dir, 'out-mapped');
    await runCli([...base, '--leaked', odd, '--out', mapped, '--map', 'leaked.colour=user_id', '--no-notices']);
    const impact = JSON.parse(fs.readFileSync(path.join(mapped, 'impact.json'), 'utf8'));
    assert.equal(impact.counts.leaked_rows_unmatched, 2);
    assert.equal(impact.files.leaked.columns[0].source, 'map');
    const link = await failure([...base, '--leaked', path.join(dir, 'leaked.csv'), '--out', path.join(dir, 'out-link'), '--contact', 'https://example.com/help']);
    assert.match(link.stderr, /--contact: must not be a link/);
    const used = await failure([...base, '--leaked', path.join(dir, 'leaked.csv'), '--out', mapped]);
    assert.match(used.stderr, /not empty/);
    const badMap = await failure([...base, '--leaked', odd, '--out', path.join(dir, 'out-x'), '--map', 'leaked.nope=email']);
    assert.match(badMap.stderr, /no such column/);
  });
});
