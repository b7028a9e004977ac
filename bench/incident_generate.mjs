#!/usr/bin/env node
// Generates a synthetic incident: an accounts export (with organisations and
// admins), an organisations export and a "leaked" analytics export shaped
// like a real one (name, email, city/region/country, OS and browser,
// referrer, user and org ids), plus the ground truth of what a correct
// cross-reference must find. Every person is made up from word lists and a
// seeded generator: no real people. The files are written as the rows are
// drawn (accounts made from their index on demand), so 10M accounts and
// 10M leaked rows take about 2 GB of memory here (mostly the truth).
//
//   node bench/incident_generate.mjs --out DIR --accounts 1000000 --leaked 1000000 \
//     [--format csv|jsonl] [--seed 7]
//
// Leaked rows, by construction (shares of --leaked):
//   user_id   60 %  user id and the account's email as is
//   email     10 %  no user id; the email upper-cased or in full-width letters (NFKC)
//   plus       8 %  no user id; "local+tag@domain" of the account's email
//   gmail      4 %  no user id; Gmail account, dots added, googlemail.com
//   org_only   6 %  unknown user and email, a known org id
//   unmatched 12 %  nothing known
// and one malformed CSV record (or JSON line) per 1,000 rows on top.
import fs from 'node:fs';
import path from 'node:path';

const FIRST = ['Ana', 'Bruno', 'Carla', 'Diego', 'Elena', 'Farid', 'Greta', 'Hugo', 'Irene',
  'Jonas', 'Karin', 'Luis', 'Marta', 'Nadia', 'Omar', 'Paula', 'Quentin', 'Rosa', 'Samir',
  'Tania', 'Ulises', 'Vera', 'Wim', 'Ximena', 'Yusuf', 'Zoe', 'José', 'Núria'];
const LAST = ['Alder', 'Birch', 'Cedar', 'Dune', 'Elm', 'Fjord', 'Glen', 'Heath', 'Isle',
  'Juniper', 'Kestrel', 'Larch', 'Moor', 'Nook', 'Oak', 'Pine', 'Quarry', 'Reed', 'Sorrel',
  'Thorn', 'Umber', 'Vale', 'Willow', 'Yarrow', 'Núñez', 'Ortega'];
const PLACES = [['Lisbon', 'Lisbon', 'PT'], ['Madrid', 'Madrid', 'ES'], ['Lyon', 'Auvergne', 'FR'],
  ['Leeds', 'England', 'GB'], ['Austin', 'Texas', 'US'], ['Porto', 'Porto', 'PT'],
  ['Valencia', 'Valencia', 'ES'], ['Munich', 'Bavaria', 'DE'], ['Puebla', 'Puebla', 'MX']];
const OS = ['Windows', 'Mac OS X', 'iOS', 'Android', 'Linux'];
const BROWSERS = ['Chrome', 'Firefox', 'Safari', 'Edge', 'Mobile Safari'];
const REFERRERS = ['https://search.example/', 'https://news.example/item', '', 'https://social.example/feed'];
const DOMAINS = ['example.org', 'example.net', 'mail.example', 'gmail.com'];

function args() {
  const out = { out: '', accounts: 1000, leaked: 1000, format: 'csv', seed: 7 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '');
    out[key] = ['accounts', 'leaked', 'seed'].includes(key) ? Number(argv[i + 1]) : argv[i + 1];
  }
  if (!out.out) throw new Error('--out DIR is required');
  return out;
}

// mulberry32: small, seeded, good enough for test data. Its state can be
// read and set, so that each write() draws the same leaked rows.
function random(seed) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.state = () => state;
  next.setState = (value) => { state = value; };
  return next;
}

function csv(fields) {
  return fields.map((f) => {
    const s = String(f ?? '');
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }).join(',');
}

function fullWidth(text) {
  return [...text].map((c) => (/[a-z0-9]/i.test(c) ? String.fromCodePoint(c.codePointAt(0) + 0xfee0) : c)).join('');
}

// Lines written in batches, so that 10M rows never sit in memory.
class LineWriter {
  constructor(file) { this.fd = fs.openSync(file, 'w'); this.lines = []; }
  push(line) {
    this.lines.push(line);
    if (this.lines.length >= 20000) this.flush();
  }
  flush() {
    if (this.lines.length > 0) fs.writeSync(this.fd, `${this.lines.join('\n')}\n`);
    this.lines = [];
  }
  close() { this.flush(); fs.closeSync(this.fd); }
}

// The accounts are drawn once (two picks each, kept as indexes) and made on
// demand from their index: 10M accounts take 20 MB, not gigabytes.
export function generate(options) {
  const { accounts: accountCount, leaked: leakedCount, seed } = options;
  const rnd = random(seed);
  const orgCount = Math.max(1, Math.floor(accountCount / 20));
  const first = new Uint8Array(accountCount);
  const last = new Uint8Array(accountCount);
  for (let i = 0; i < accountCount; i++) {
    first[i] = Math.floor(rnd() * FIRST.length);
    last[i] = Math.floor(rnd() * LAST.length);
  }
  const account = (i) => {
    const firstName = FIRST[first[i]];
    const lastName = LAST[last[i]];
    const domain = DOMAINS[i % DOMAINS.length];
    const local = `${firstName}.${lastName}${i}`.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase().replace(/\./g, domain === 'gmail.com' ? '' : '.');
    const place = PLACES[i % PLACES.length];
    return {
      user_id: `u-${(i * 7919 + 13).toString(36)}-${i}`,
      email: `${local}@${domain}`,
      name: `${firstName} ${lastName}`,
      org_id: `org-${i % orgCount}`,
      role: i < orgCount ? 'admin' : 'member',
      language: i % 5 === 0 ? 'es' : 'en',
      country: place[2],
    };
  };
  return { accountCount, leakedCount, orgCount, account, rnd, rowsState: rnd.state() };
}

// Draws the leaked rows (the same ones on every call) and hands each to
// `emit`; returns the ground truth.
function leakedRows(data, emit) {
  const { accountCount, leakedCount, orgCount, account, rnd } = data;
  rnd.setState(data.rowsState);
  const pick = (list) => list[Math.floor(rnd() * list.length)];
  const truth = {
    accounts: accountCount, orgs: orgCount, leaked_rows: 0, rejected: 0,
    by_method: { user_id: 0, email: 0, email_plus_address: 0, email_gmail_dots: 0, org_id: 0 },
    matched_rows: 0, org_only_rows: 0, unmatched_rows: 0,
    affected_accounts: [], affected_orgs: [], by_country: {},
  };
  const affected = new Uint8Array(accountCount);
  const affectedOrgs = new Uint8Array(orgCount);
  const isGmail = (i) => DOMAINS[i % DOMAINS.length] === 'gmail.com';
  // Accounts are taken in a shuffled order so leaked rows spread over them.
  let cursor = Math.floor(rnd() * accountCount);
  const nextAccount = (wantGmail) => {
    for (let tries = 0; tries < 8; tries++) {
      cursor = (cursor + 7919) % accountCount;
      if (!wantGmail || isGmail(cursor)) return cursor;
    }
    while (!isGmail(cursor)) cursor = (cursor + 1) % accountCount;
    return cursor;
  };
  const hit = (i) => {
    truth.matched_rows++;
    affected[i] = 1;
    affectedOrgs[i % orgCount] = 1;
    return account(i);
  };
  for (let r = 0; r < leakedCount; r++) {
    const roll = rnd();
    const place = pick(PLACES);
    const base = {
      event: pick(['Page View', 'Signed In', 'Invoice Viewed']),
      time: new Date(Date.UTC(2026, 9, 1) + Math.floor(rnd() * 86400e3 * 30)).toISOString(),
      city: place[0], region: place[1], country: place[2],
      os: pick(OS), browser: pick(BROWSERS), referrer: pick(REFERRERS),
    };
    let row;
    if (roll < 0.6) {
      const a = hit(nextAccount(false));
      row = { ...base, user_id: a.user_id, email: a.email, name: a.name, org_id: a.org_id, country: a.country };
      truth.by_method.user_id++;
      truth.by_method.email++;
    } else if (roll < 0.7) {
      const a = hit(nextAccount(false));
      const email = r % 2 === 0 ? a.email.toUpperCase() : fullWidth(a.email);
      row = { ...base, user_id: '', email, name: a.name, org_id: a.org_id, country: a.country };
      truth.by_method.email++;
    } else if (roll < 0.78) {
      let i = nextAccount(false);
      while (isGmail(i)) i = nextAccount(false);
      const a = hit(i);
      const [local, domain] = a.email.split('@');
      row = { ...base, user_id: '', email: `${local}+promo${r % 7}@${domain}`, name: a.name, org_id: a.org_id, country: a.country };
      truth.by_method.email_plus_address++;
    } else if (roll < 0.82) {
      const a = hit(nextAccount(true));
      const local = a.email.split('@')[0];
      const dotted = local.length > 2 ? `${local.slice(0, 2)}.${local.slice(2)}` : local;
      row = { ...base, user_id: '', email: `${dotted}@googlemail.com`, name: a.name, org_id: a.org_id, country: a.country };
      truth.by_method.email_gmail_dots++;
    } else if (roll < 0.88) {
      const orgIndex = Math.floor(rnd() * orgCount);
      row = { ...base, user_id: `ghost-${r}`, email: `ghost${r}@elsewhere.example`, name: 'Pat Doe', org_id: `org-${orgIndex}` };
      truth.by_method.org_id++;
      truth.org_only_rows++;
      affectedOrgs[orgIndex] = 1;
    } else {
      row = { ...base, user_id: `stranger-${r}`, email: `stranger${r}@elsewhere.example`, name: 'Sam Roe', org_id: `org-x${r}` };
      truth.unmatched_rows++;
    }
    emit(row, r);
  }
  for (let i = 0; i < accountCount; i++) {
    if (affected[i]) {
      const a = account(i);
      truth.affected_accounts.push(a.user_id);
      truth.by_country[a.country] = (truth.by_country[a.country] ?? 0) + 1;
    }
  }
  for (let o = 0; o < orgCount; o++) {
    if (affectedOrgs[o]) truth.affected_orgs.push(`org-${o}`);
  }
  truth.affected_orgs.sort();
  truth.leaked_rows = leakedCount;
  return truth;
}

export function write(dir, data, format) {
  fs.mkdirSync(dir, { recursive: true });
  const accountsOut = new LineWriter(path.join(dir, 'accounts.csv'));
  accountsOut.push('user_id,email,name,org_id,role,language,country');
  for (let i = 0; i < data.accountCount; i++) {
    const a = data.account(i);
    accountsOut.push(csv([a.user_id, a.email, a.name, a.org_id, a.role, a.language, a.country]));
  }
  accountsOut.close();
  const orgsOut = new LineWriter(path.join(dir, 'orgs.csv'));
  orgsOut.push('org_id,name,admin_email');
  for (let o = 0; o < data.orgCount; o++) orgsOut.push(csv([`org-${o}`, `Org ${o} Ltd`, data.account(o).email]));
  orgsOut.close();
  const out = new LineWriter(path.join(dir, format === 'jsonl' ? 'leaked.jsonl' : 'leaked.csv'));
  let rejected = 0;
  if (format !== 'jsonl') {
    out.push('event,time,user_id,email,name,city,region,country,os,browser,referrer,org_id');
  }
  const truth = leakedRows(data, (row, i) => {
    if (format === 'jsonl') {
      out.push(JSON.stringify({
        event: row.event,
        properties: {
          time: row.time, distinct_id: row.user_id || undefined, $email: row.email, $name: row.name,
          $city: row.city, $region: row.region, mp_country_code: row.country, $os: row.os,
          $browser: row.browser, $referrer: row.referrer || undefined,
          company: { id: row.org_id },
        },
      }));
      if (i % 1000 === 500) { out.push('{"event": "broken", '); rejected++; }
    } else {
      out.push(csv([row.event, row.time, row.user_id, row.email, row.name, row.city, row.region,
        row.country, row.os, row.browser, row.referrer, row.org_id]));
      if (i % 1000 === 500) { out.push('only,three,fields'); rejected++; }
    }
  });
  out.close();
  truth.rejected = rejected;
  fs.writeFileSync(path.join(dir, 'truth.json'), JSON.stringify(truth));
  return truth;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const options = args();
  const truth = write(options.out, generate(options), options.format);
  console.log(`wrote ${options.out}: ${truth.accounts} accounts, ${truth.leaked_rows} leaked rows (+${truth.rejected} malformed), ${truth.affected_accounts.length} affected accounts`);
}
