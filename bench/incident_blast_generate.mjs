// Writes a generated audit log (docs/formats/audit.md) for the blast-radius
// bench: RECORDS records spread evenly over one year ending now, made by
// KEYS keys (the first, mpk_0000000000000000, is the "compromised" one),
// 98 % queries (`query.start` + `query`, as issue 6 records them) and the rest
// exports (`export.start` + `export`, each with a subject file of SUBJECTS
// pseudonyms drawn from a population of 1M). The chain is hashed as
// src/audit does, with an anchor every 1,024 records. No person exists
// here: the pseudonyms are random hex.
//
//   node bench/incident_blast_generate.mjs --out DATA [--records 3650000] [--keys 200] [--subjects 200]
//
// DATA/audit/{log,anchors,subjects/} and DATA/truth.json: what the first
// key did over the year (records, exports, queries, distinct subjects).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, arg, index, all) => {
  if (arg.startsWith('--')) {
    pairs.push([arg.slice(2), all[index + 1]]);
  }
  return pairs;
}, []));
const out = args.out;
if (!out) {
  console.error('usage: node bench/incident_blast_generate.mjs --out DATA [--records N] [--keys N] [--subjects N]');
  process.exit(2);
}
const records = Number(args.records ?? 3_650_000);
const keyCount = Number(args.keys ?? 200);
const subjectsPerExport = Number(args.subjects ?? 200);
const exportShare = 0.02;
const population = 1_000_000;
const anchorInterval = 1024;
const yearMs = 365 * 24 * 3600 * 1000;
const endMs = Date.now();
const startMs = endMs - yearMs;

// A deterministic generator, so that reruns give the same log.
let state = 0x9e3779b9;
function random() {
  state ^= state << 13;
  state >>>= 0;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return state / 0x100000000;
}
const keys = Array.from({ length: keyCount }, (_, index) => `mpk_${index.toString(16).padStart(16, '0')}`);
const pseudonym = (index) => `psn_${crypto.createHash('md5').update(`bench-${index}`).digest('hex')}`;

const folder = path.join(out, 'audit');
fs.mkdirSync(path.join(folder, 'subjects'), { recursive: true, mode: 0o700 });
const log = fs.openSync(path.join(folder, 'log'), 'w', 0o600);
const anchors = [];
const header = Buffer.alloc(16);
header.write('MPAUDIT1', 0, 'latin1');
header.writeUInt32LE(1, 8);
fs.writeSync(log, header);

let head = Buffer.alloc(32);
let seq = 0;
let pending = [];
let pendingBytes = 0;
function flush() {
  if (pending.length > 0) {
    fs.writeSync(log, Buffer.concat(pending));
    pending = [];
    pendingBytes = 0;
  }
}
function append(entry) {
  seq += 1;
  const payload = Buffer.from(JSON.stringify({ seq, ...entry }), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(payload.length, 0);
  head = crypto.createHash('sha256').update(head).update(length).update(payload).digest();
  pending.push(length, payload, head);
  pendingBytes += payload.length + 36;
  if (pendingBytes > (8 << 20)) {
    flush();
  }
  if (seq % anchorInterval === 0) {
    anchors.push(`${seq} ${head.toString('hex')} ${entry.time_ms}\n`);
  }
}
function entry(fields) {
  return {
    time_ms: 0, key: '', act: '', route: '', projects: [1], params_sha256: '', events: [], properties: [],
    rows: 0, subjects: 0, bytes: 0, subjects_file: '', subjects_sha256: '', target: '', outcome: 'ok', ...fields,
  };
}

const truth = { key: keys[0], from_ms: startMs, to_ms: endMs + 1, records_of_key: 0, exports: 0, queries: 0, subjects: 0 };
const truthSubjects = new Set();
const reads = Math.floor(records / 2);  // each read is a start and an end
for (let read = 0; read < reads; read += 1) {
  const time = startMs + Math.floor((read * yearMs) / reads);
  const key = keys[Math.floor(random() * keyCount)];
  const params = crypto.createHash('sha256').update(`${read}`).digest('hex');
  const isExport = random() < exportShare;
  const act = isExport ? 'export' : 'query';
  const route = isExport ? '/api/2.0/export' : '/api/query';
  append(entry({ time_ms: time, key, act: `${act}.start`, route, params_sha256: params,
    events: isExport ? [] : ['purchase'], properties: isExport ? [] : ['plan'] }));
  const end = entry({ time_ms: time + 5, key, act, route, params_sha256: params, events: ['purchase', 'signup'],
    properties: isExport ? ['$browser', '$city', '$os', 'plan', 'time'] : ['plan'], bytes: 4096 });
  if (isExport) {
    const chosen = new Set();
    while (chosen.size < subjectsPerExport) {
      chosen.add(pseudonym(Math.floor(random() * population)));
    }
    const text = `${[...chosen].sort().join('\n')}\n`;
    const name = `subjects/${time}-${read}.txt`;
    fs.writeFileSync(path.join(folder, name), text, { mode: 0o600 });
    end.rows = chosen.size * 3;
    end.subjects = chosen.size;
    end.subjects_file = name;
    end.subjects_sha256 = crypto.createHash('sha256').update(text).digest('hex');
    if (key === keys[0]) {
      truth.exports += 1;
      for (const subject of chosen) {
        truthSubjects.add(subject);
      }
    }
  } else if (key === keys[0]) {
    truth.queries += 1;
  }
  if (key === keys[0]) {
    truth.records_of_key += 2;
  }
  append(end);
}
flush();
fs.closeSync(log);
fs.writeFileSync(path.join(folder, 'anchors'), anchors.join(''), { mode: 0o600 });
truth.subjects = truthSubjects.size;
truth.records = seq;
truth.log_bytes = fs.statSync(path.join(folder, 'log')).size;
fs.writeFileSync(path.join(out, 'truth.json'), `${JSON.stringify(truth)}\n`);
console.log(JSON.stringify(truth));
