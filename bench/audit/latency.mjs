// The audit log's cost on POST /api/query and GET /api/2.0/export: two
// minpanel binaries (one without the audit log, one with it) take turns
// serving one data folder, and each answers the same requests; prints the
// median latencies per binary, sequential and with 8 clients at once, and
// the server's CPU time (user + sys, from /proc/PID/stat) per request.
// A binary built with MINPANEL_BENCH_NO_AUDIT (no audit log at all) starts
// only with MINPANEL_BENCH_NO_AUDIT=1 in its environment, which every
// server started here gets (other binaries ignore it).
// A binary written BIN@shm serves with the audit folder on /dev/shm (no
// fsync cost), BIN@disk with it beside the data folder: <data>/audit is a
// symlink switched between runs, each binary and place keeping its own
// chain (an older binary may not read a newer one's log: audit log format
// version 3). BIN@disk@FILE (or BIN@shm@FILE) serves with --config FILE,
// e.g. to compare settings such as audit_sync_hold_us with one binary.
// Used by bench/audit.sh; results in docs/benchmarks.md.
//
//   node bench/audit/latency.mjs --bins OLD,NEW --data DIR --keys DIR --secret S
//        [--rounds 3] [--requests 200] [--from-date D --to-date D] [--cases query,export]
import { spawn } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, value, index, all) => {
  if (value.startsWith('--')) pairs.push([value.slice(2), all[index + 1]]);
  return pairs;
}, []));
const bins = args.bins.split(',');
const rounds = Number(args.rounds || 3);
const requests = Number(args.requests || 200);
const auth = `Basic ${Buffer.from(`${args.secret}:`).toString('base64')}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function request(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = http.request({ host: '127.0.0.1', port, method, path, agent, headers: { Authorization: auth } }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => { bytes += chunk.length; });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${path}: ${res.statusCode}`));
        else resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, bytes });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

// The process's CPU time so far (user + sys), in ms: fields 14 and 15 of
// /proc/PID/stat, in clock ticks (100 per second on Linux).
function cpuMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

const auditFolders = {};
function auditFolder(binIdx, where) {
  const parent = where === 'shm' ? '/dev/shm' : path.dirname(args.data);
  const prefix = where === 'shm' ? `minpanel-audit-${binIdx}-` : `audit-disk-${binIdx}-`;
  auditFolders[`${binIdx}@${where}`] ??= fs.mkdtempSync(path.join(parent, prefix));
  return auditFolders[`${binIdx}@${where}`];
}
function placeAudit(binIdx, where) {
  const link = path.join(args.data, 'audit');
  try {
    const stat = fs.lstatSync(link);
    if (stat.isSymbolicLink()) fs.unlinkSync(link);
    else fs.renameSync(link, `${link}-${Date.now()}`);
  } catch {
    // none yet
  }
  if (where) fs.symlinkSync(auditFolder(binIdx, where), link);
}

async function serve(spec, binIdx, port) {
  const [bin, where, config] = spec.split('@');
  placeAudit(binIdx, where);
  const options = config ? ['--config', config] : [];
  const child = spawn(bin, ['serve', ...options, '--data', args.data, '--keys', args.keys, '--listen', `127.0.0.1:${port}`],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MINPANEL_BENCH_NO_AUDIT: '1' } });
  child.stderr.resume();
  for (let attempt = 0; attempt < 400; attempt += 1) {
    try {
      await new Promise((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: '/healthz' }, (res) => { res.resume(); res.statusCode === 200 ? resolve() : reject(); })
          .on('error', reject);
      });
      return child;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error(`${bin} did not start`);
}

const query = JSON.stringify({ kind: 'segmentation', from: args['from-date'], to: args['to-date'], events: ['page_view'] });
const exportPath = `/api/2.0/export?from_date=${args['from-date']}&to_date=${args['from-date']}&event=${encodeURIComponent('["purchase"]')}`;
const cases = {
  query: (port) => request(port, 'POST', '/api/query', query),
  export: (port) => request(port, 'GET', exportPath),
};

// Which cases run (all by default): `--cases query` alone lets a run serve
// many more queries in the same time.
const selected = (args.cases || Object.keys(cases).join(',')).split(',');
const results = {};
for (let round = 0; round < rounds; round += 1) {
  for (const [binIdx, bin] of bins.entries()) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = await serve(bin, binIdx, port);
    for (const [name, run] of Object.entries(cases).filter(([name]) => selected.includes(name))) {
      for (let warm = 0; warm < 10; warm += 1) await run(port);
      const sequential = [];
      const cpuBefore = cpuMs(child.pid);
      for (let idx = 0; idx < requests; idx += 1) sequential.push((await run(port)).ms);
      const cpuSequential = cpuMs(child.pid) - cpuBefore;
      const concurrent = [];
      const started = Date.now();
      await Promise.all(Array.from({ length: 8 }, async () => {
        for (let idx = 0; idx < requests / 8; idx += 1) concurrent.push((await run(port)).ms);
      }));
      const cpuConcurrent = cpuMs(child.pid) - cpuBefore - cpuSequential;
      const key = `${name} ${bins[binIdx]}`;
      results[key] ??= { sequential: [], concurrent: [], per_second: [], cpu_per_request: [] };
      results[key].sequential.push(...sequential);
      results[key].concurrent.push(...concurrent);
      results[key].per_second.push(concurrent.length / ((Date.now() - started) / 1000));
      results[key].cpu_per_request.push((cpuSequential + cpuConcurrent) / (sequential.length + concurrent.length));
      console.error(`round ${round + 1} ${key}: sequential median ${median(sequential).toFixed(2)} ms, ` +
        `${(concurrent.length / ((Date.now() - started) / 1000)).toFixed(0)} requests/s with 8 clients, ` +
        `server CPU ${((cpuSequential + cpuConcurrent) / (sequential.length + concurrent.length)).toFixed(3)} ms/request`);
    }
    // A server that does not stop within 30 s is killed and named: a hang
    // at shutdown is a bug to see, not a reason for the benchmark to stall.
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => {
      console.error(`${bins[binIdx]}: still running 30 s after SIGTERM; killed`);
      child.kill('SIGKILL');
    }, 30_000);
    await exited;
    clearTimeout(timer);
  }
}
for (const [key, value] of Object.entries(results)) {
  console.log(`${key}: sequential median ${median(value.sequential).toFixed(2)} ms, ` +
    `8 clients median ${median(value.concurrent).toFixed(2)} ms, ${median(value.per_second).toFixed(0)} requests/s, ` +
    `server CPU ${median(value.cpu_per_request).toFixed(3)} ms/request (median of rounds)`);
}
agent.destroy();
for (const [key, folder] of Object.entries(auditFolders)) {
  if (key.endsWith('@shm')) fs.rmSync(folder, { recursive: true, force: true });
}
