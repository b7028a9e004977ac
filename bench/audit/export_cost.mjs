// What an access key's export costs over the project secret's, and what a
// project's minimum group size k costs a query, on one binary and one data
// folder (docs/benchmarks.md, "Audit log" and "k-suppression and export
// watermarks"). The secret's export (watermark=false) carries no decoys;
// an access key's export of a time range carries decoys (the watermark).
// After each export both replace their history file with fsync
// (<data>/key_usage, the anomaly rules' and the key's quotas' memory: the
// rules watch the project secret too). The server is
// run with <data>/key_usage on /dev/shm (the history's work without its
// fsync) and on disk (as it runs), so that
//   key on shm − secret   ≈ the watermark (and the key's own checks),
//   key on disk − key on shm ≈ the history file's write and fsync.
// Two exports: one day of one event (~2,900 rows) and the whole week of
// every event (all rows). Then an aggregate key's queries (a daily count
// by plan, a 3-step funnel by plan) with the project's k at 0 and at 5,
// the two servers in alternating order each round.
// Each case reports the median wall time per request (sequential and with
// 8 clients at once) and the server's CPU time per request (user + system
// of all its threads, from /proc/PID/stat, over the sequential requests):
// on a loaded machine CPU time moves much less than wall time.
// Used by bench/audit_export.sh.
//
//   node bench/audit/export_cost.mjs --bin BIN --data DIR --keys DIR --secret S --key-secret K
//        --aggregate-secret A --project NAME --from-date D --to-date D
//        [--rounds 3] [--requests 100] [--big-requests 10]
import { execFileSync, spawn } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((pairs, value, index, all) => {
  if (value.startsWith('--')) pairs.push([value.slice(2), all[index + 1]]);
  return pairs;
}, []));
const rounds = Number(args.rounds || 3);
const requests = Number(args.requests || 100);
const bigRequests = Number(args['big-requests'] || 10);
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const authOf = (secret) => `Basic ${Buffer.from(`${secret}:`).toString('base64')}`;

function request(port, requestPath, secret) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = http.request({ host: '127.0.0.1', port, path: requestPath, agent, headers: { Authorization: authOf(secret) } }, (res) => {
      let lines = 0;
      res.on('data', (chunk) => {
        for (const byte of chunk) lines += byte === 10 ? 1 : 0;
      });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${requestPath}: ${res.statusCode}`));
        else resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, lines });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

// The CPU time (ms) process `pid` has used so far, all threads together:
// utime + stime of /proc/PID/stat, in clock ticks of 10 ms.
const ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
function processCpuMs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
}

function post(port, requestPath, secret, body) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const req = http.request({
      host: '127.0.0.1', port, path: requestPath, method: 'POST', agent,
      headers: { Authorization: authOf(secret), 'Content-Type': 'application/json' },
    }, (res) => {
      let text = '';
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`${requestPath}: ${res.statusCode} ${text}`));
        else resolve({ ms: Number(process.hrtime.bigint() - started) / 1e6, text });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

const usageFolders = {
  shm: fs.mkdtempSync(path.join('/dev/shm', 'minpanel-key-usage-')),
  disk: fs.mkdtempSync(path.join(path.dirname(args.data), 'key-usage-disk-')),
};
function placeUsage(where) {
  const link = path.join(args.data, 'key_usage');
  try {
    const stat = fs.lstatSync(link);
    if (stat.isSymbolicLink()) fs.unlinkSync(link);
    else fs.rmSync(link, { recursive: true, force: true });
  } catch {
    // none yet
  }
  fs.symlinkSync(usageFolders[where], link);
}

async function serve(where, port, config) {
  placeUsage(where);
  const serveArgs = ['serve', '--data', args.data, '--keys', args.keys, '--listen', `127.0.0.1:${port}`];
  if (config) serveArgs.push('--config', config);
  const child = spawn(args.bin, serveArgs, { stdio: ['ignore', 'ignore', 'pipe'] });
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
  throw new Error(`${args.bin} did not start`);
}

const dayPath = `/api/2.0/export?from_date=${args['from-date']}&to_date=${args['from-date']}&event=${encodeURIComponent('["purchase"]')}`;
const weekPath = `/api/2.0/export?from_date=${args['from-date']}&to_date=${args['to-date']}`;
const cases = [
  ['day, secret', `${dayPath}&watermark=false`, args.secret, requests],
  ['day, key', dayPath, args['key-secret'], requests],
  ['week, secret', `${weekPath}&watermark=false`, args.secret, bigRequests],
  ['week, key', weekPath, args['key-secret'], bigRequests],
];

const results = {};
// Runs `count` sequential requests, then `count` more from 8 clients at
// once, and adds their times and the server's CPU to results[label].
async function measure(label, child, count, send) {
  for (let warm = 0; warm < 3; warm += 1) await send();
  const sequential = [];
  let lines = 0;
  const cpuBefore = processCpuMs(child.pid);
  for (let idx = 0; idx < count; idx += 1) {
    const done = await send();
    sequential.push(done.ms);
    lines = done.lines;
  }
  const cpuPerRequest = (processCpuMs(child.pid) - cpuBefore) / count;
  const concurrent = [];
  const started = Date.now();
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let idx = 0; idx < Math.max(1, count / 8); idx += 1) concurrent.push((await send()).ms);
  }));
  results[label] ??= { sequential: [], concurrent: [], per_second: [], cpu: [], lines };
  results[label].sequential.push(...sequential);
  results[label].concurrent.push(...concurrent);
  results[label].per_second.push(concurrent.length / ((Date.now() - started) / 1000));
  results[label].cpu.push(cpuPerRequest);
}

async function stop(child) {
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await exited;
  clearTimeout(timer);
}

const queries = [
  ['daily count by plan', {
    kind: 'segmentation', from: args['from-date'], to: args['to-date'], unit: 'day',
    events: ['page_view'], measure: 'total', breakdown: { properties: ['plan'] },
  }],
  ['funnel of 3 steps by plan', {
    kind: 'funnel', from: args['from-date'], to: args['to-date'],
    steps: ['page_view', 'sign_up', 'purchase'], breakdown: 'plan',
  }],
];
function setMinGroupSize(k) {
  execFileSync(args.bin, ['project', 'set-min-group-size', args.project, String(k),
    '--data', args.data, '--keys', args.keys], { stdio: 'ignore' });
}

for (let round = 0; round < rounds; round += 1) {
  for (const where of ['shm', 'disk']) {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = await serve(where, port);
    for (const [name, requestPath, secret, count] of cases) {
      await measure(`${name}, key_usage on ${where}`, child, count, () => request(port, requestPath, secret));
    }
    await stop(child);
  }
  for (const k of round % 2 === 0 ? [0, 5] : [5, 0]) {
    setMinGroupSize(k);
    const port = 20000 + Math.floor(Math.random() * 20000);
    const child = await serve('disk', port);
    for (const [name, query] of queries) {
      const body = JSON.stringify(query);
      await measure(`${name}, aggregate key, k = ${k}`, child, requests, async () => {
        const done = await post(port, '/api/query', args['aggregate-secret'], body);
        const answer = JSON.parse(done.text);
        if ((answer.min_group_size ?? 0) !== k) throw new Error(`asked k = ${k}, answered ${done.text.slice(0, 200)}`);
        return { ms: done.ms, lines: 1 };
      });
    }
    await stop(child);
  }
}
setMinGroupSize(0);
// The zone maps' upper bound of each export's rows (what `reason` and the
// burst rule before an export use) against the rows it returns: with
// export_reason_rows = 1 the refusal names the bound.
const boundConfig = path.join(path.dirname(args.data), 'bound.toml');
fs.writeFileSync(boundConfig, '[limits]\nexport_reason_rows = 1\n');
{
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = await serve('disk', port, boundConfig);
  for (const [name, requestPath] of [['day', dayPath], ['week', weekPath]]) {
    const text = await new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: requestPath, agent, headers: { Authorization: authOf(args.secret) } }, (res) => {
        let body = '';
        res.on('data', (chunk) => { body += chunk; });
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    const bound = /may return up to (\d+) rows/.exec(text)?.[1];
    const returned = results[`${name}, secret, key_usage on disk`]?.lines;
    console.log(`${name}: zone-map bound ${bound} rows, ${returned} returned`);
  }
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}
for (const [key, value] of Object.entries(results)) {
  console.log(`${key}: ${value.lines} rows, sequential median ${median(value.sequential).toFixed(2)} ms, ` +
    `server CPU ${median(value.cpu).toFixed(2)} ms per request (median of ${value.cpu.length} rounds), ` +
    `8 clients median ${median(value.concurrent).toFixed(2)} ms, ${median(value.per_second).toFixed(1)} requests/s`);
}
agent.destroy();
fs.rmSync(usageFolders.shm, { recursive: true, force: true });
