#!/usr/bin/env node
// Generates a synthetic incident: an accounts export (with organisations and
// admins), an organisations export and a "leaked" analytics export shaped
// like a real one (name, email, city/region/country, OS and browser,
// referrer, user and org ids), plus the ground truth of what a correct
// cross-reference must find. Every person is made up from word lists and a
// seeded generator: no real people.
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

// mulberry32: small, seeded, good enough for test data.
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
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

export function generate(options) {
  const { accounts: accountCount, leaked: leakedCount, seed } = options;
  const rnd = random(seed);
  const pick = (list) => list[Math.floor(rnd() * list.length)];
  const orgCount = Math.max(1, Math.floor(accountCount / 20));
  const accounts = [];
  for (let i = 0; i < accountCount; i++) {
    const first = pick(FIRST);
    const last = pick(LAST);
    const domain = DOMAINS[i % DOMAINS.length];
    const local = `${first}.${last}${i}`.normalize('NFD').replace(/[\u0300-\u036f]/g, '').toLowerCase().replace(/\./g, domain === 'gmail.com' ? '' : '.');
    const org = i % orgCount;
    const place = PLACES[i % PLACES.length];
    accounts.push({
      user_id: `u-${(i * 7919 + 13).toString(36)}-${i}`,
      email: `${local}@${domain}`,
      name: `${first} ${last}`,
      org_id: `org-${org}`,
      role: i < orgCount ? 'admin' : 'member',
      language: i % 5 === 0 ? 'es' : 'en',
      country: place[2],
    });
  }
  const orgs = [];
  for (let o = 0; o < orgCount; o++) {
    orgs.push({ org_id: `org-${o}`, name: `Org ${o} Ltd`, admin_email: accounts[o].email });
  }
  const truth = {
    accounts: accountCount, orgs: orgCount, leaked_rows: 0, rejected: 0,
    by_method: { user_id: 0, email: 0, email_plus_address: 0, email_gmail_dots: 0, org_id: 0 },
    matched_rows: 0, org_only_rows: 0, unmatched_rows: 0,
    affected_accounts: [], affected_orgs: [], by_country: {},
  };
  const affected = new Set();
  const affectedOrgs = new Set();
  const rows = [];
  // Accounts are taken in a shuffled order so leaked rows spread over them.
  let cursor = Math.floor(rnd() * accountCount);
  const nextAccount = (wantGmail) => {
    for (let tries = 0; tries < 8; tries++) {
      cursor = (cursor + 7919) % accountCount;
      if (!wantGmail || accounts[cursor].email.endsWith('@gmail.com')) return accounts[cursor];
    }
    while (!accounts[cursor].email.endsWith('@gmail.com')) cursor = (cursor + 1) % accountCount;
    return accounts[cursor];
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
      const a = nextAccount(false);
      row = { ...base, user_id: a.user_id, email: a.email, name: a.name, org_id: a.org_id, country: a.country };
      truth.by_method.user_id++;
      truth.by_method.email++;
      truth.matched_rows++;
      affected.add(a.user_id);
      affectedOrgs.add(a.org_id);
    } else if (roll < 0.7) {
      const a = nextAccount(false);
      const email = r % 2 === 0 ? a.email.toUpperCase() : fullWidth(a.email);
      row = { ...base, user_id: '', email, name: a.name, org_id: a.org_id, country: a.country };
      truth.by_method.email++;
      truth.matched_rows++;
      affected.add(a.user_id);
      affectedOrgs.add(a.org_id);
    } else if (roll < 0.78) {
      let a = nextAccount(false);
      while (a.email.endsWith('@gmail.com')) a = nextAccount(false);
      const [local, domain] = a.email.split('@');
      row = { ...base, user_id: '', email: `${local}+promo${r % 7}@${domain}`, name: a.name, org_id: a.org_id, country: a.country };
      truth.by_method.email_plus_address++;
      truth.matched_rows++;
      affected.add(a.user_id);
      affectedOrgs.add(a.org_id);
    } else if (roll < 0.82) {
      const a = nextAccount(true);
      const local = a.email.split('@')[0];
      const dotted = local.length > 2 ? `${local.slice(0, 2)}.${local.slice(2)}` : local;
      row = { ...base, user_id: '', email: `${dotted}@googlemail.com`, name: a.name, org_id: a.org_id, country: a.country };
      truth.by_method.email_gmail_dots++;
      truth.matched_rows++;
      affected.add(a.user_id);
      affectedOrgs.add(a.org_id);
    } else if (roll < 0.88) {
      const org = `org-${Math.floor(rnd() * orgCount)}`;
      row = { ...base, user_id: `ghost-${r}`, email: `ghost${r}@elsewhere.example`, name: 'Pat Doe', org_id: org };
      truth.by_method.org_id++;
      truth.org_only_rows++;
      affectedOrgs.add(org);
    } else {
      row = { ...base, user_id: `stranger-${r}`, email: `stranger${r}@elsewhere.example`, name: 'Sam Roe', org_id: `org-x${r}` };
      truth.unmatched_rows++;
    }
    rows.push(row);
  }
  for (const a of accounts) {
    if (affected.has(a.user_id)) {
      truth.affected_accounts.push(a.user_id);
      truth.by_country[a.country] = (truth.by_country[a.country] ?? 0) + 1;
    }
  }
  truth.affected_orgs = [...affectedOrgs].sort();
  truth.leaked_rows = rows.length;
  return { accounts, orgs, rows, truth };
}

export function write(dir, data, format) {
  fs.mkdirSync(dir, { recursive: true });
  const { accounts, orgs, rows, truth } = data;
  const accountLines = ['user_id,email,name,org_id,role,language,country'];
  for (const a of accounts) accountLines.push(csv([a.user_id, a.email, a.name, a.org_id, a.role, a.language, a.country]));
  fs.writeFileSync(path.join(dir, 'accounts.csv'), accountLines.join('\n') + '\n');
  const orgLines = ['org_id,name,admin_email'];
  for (const o of orgs) orgLines.push(csv([o.org_id, o.name, o.admin_email]));
  fs.writeFileSync(path.join(dir, 'orgs.csv'), orgLines.join('\n') + '\n');
  const out = [];
  let rejected = 0;
  if (format === 'jsonl') {
    rows.forEach((row, i) => {
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
    });
  } else {
    out.push('event,time,user_id,email,name,city,region,country,os,browser,referrer,org_id');
    rows.forEach((row, i) => {
      out.push(csv([row.event, row.time, row.user_id, row.email, row.name, row.city, row.region,
        row.country, row.os, row.browser, row.referrer, row.org_id]));
      if (i % 1000 === 500) { out.push('only,three,fields'); rejected++; }
    });
  }
  truth.rejected = rejected;
  fs.writeFileSync(path.join(dir, format === 'jsonl' ? 'leaked.jsonl' : 'leaked.csv'), out.join('\n') + '\n');
  fs.writeFileSync(path.join(dir, 'truth.json'), JSON.stringify(truth));
  return truth;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const options = args();
  const truth = write(options.out, generate(options), options.format);
  console.log(`wrote ${options.out}: ${truth.accounts} accounts, ${truth.leaked_rows} leaked rows (+${truth.rejected} malformed), ${truth.affected_accounts.length} affected accounts`);
}
