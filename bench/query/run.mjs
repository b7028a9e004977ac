// The query benchmark's runner, called by bench/query.sh:
//
//   node run.mjs load-duckdb --db FILE                  (events as jsonl on stdin)
//   node run.mjs query --engine duckdb --db FILE        [common options]
//   node run.mjs query --engine clickhouse --http-port P --table T [common options]
//   node run.mjs query --engine minpanel --url http://127.0.0.1:P --secret S [common options]
//       common: --from-ms MS --to-ms MS --users FILE --runs K --out FILE.json
//       minpanel only: --server-pid PID (the server's CPU time per run, below)
//   node run.mjs report --out-dir DIR                   (the markdown table)
//
// `query` runs each query once to warm up, then --runs times, and writes the
// wall-clock times (ms), their median and the canonical answer. DuckDB runs in
// this process (runAndReadAll: every row reaches the client); ClickHouse is
// asked over HTTP (the whole body is read). `report` reads every result file
// in --out-dir, fails (exit 1) when two engines' canonical answers differ and
// prints the table.
//
// minpanel is asked over HTTP too, as ClickHouse is: a running `minpanel
// serve` (started by bench/query.sh), the project secret as the Basic user;
// queries 1-4 are POST /api/query, query 5 is POST /api/2.0/export with
// distinct_ids. A run's time ends when the whole body is read. A failing
// minpanel query is recorded with its error, never as a number.
//
// With --server-pid, each run also records the CPU time the server process
// spent on it (cpu_ms, median_cpu_ms): user + system time of all its threads,
// the ones that ended included, read before and after the request. On a
// machine shared with other work CPU time moves much less than wall time.
// It is read through the process's CPU clock (clock_gettime of
// clock_getcpuclockid(PID), in ns; Linux lets any process read it), which
// Node cannot call, so a one-line Debian python3 reads it; /proc/PID/stat
// has the same sum only in 10 ms ticks, too coarse for queries of 100 ms.
// The warm-up's body is hashed (answer_sha256), so that two binaries'
// answers can be compared byte for byte (bench/query/compare.sh does).
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { COLUMNS, MINPANEL_EXPORT_COLUMNS, queries } from './queries.mjs';

function parseArgs(argv) {
  const args = { _: [] };
  for (let idx = 0; idx < argv.length; ++idx) {
    if (argv[idx].startsWith('--')) {
      args[argv[idx].slice(2)] = argv[idx + 1];
      ++idx;
    } else {
      args._.push(argv[idx]);
    }
  }
  return args;
}

function median(values) {
  const sorted = [...values].sort((left, right) => left - right);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

// The CPU time (ms) process `pid` has used so far, all threads together.
// The clock id of a process's CPU clock is what glibc's clock_getcpuclockid
// returns: (~pid << 3) | CPUCLOCK_SCHED (2).
function processCpuMs(pid) {
  const script = 'import sys, time; print(time.clock_gettime_ns(((~int(sys.argv[1])) << 3) | 2))';
  const ns = execFileSync('python3', ['-c', script, String(pid)], { encoding: 'utf8' });
  return Number(BigInt(ns.trim()) / 1000n) / 1000;
}

async function openDuckdb(path) {
  const { DuckDBInstance } = await import('@duckdb/node-api');
  // Two threads: the machine has two cores, as ClickHouse's max_threads.
  const instance = await DuckDBInstance.create(path, { threads: '2', memory_limit: '8GB' });
  return { instance, connection: await instance.connect() };
}

// The events arrive as JSON lines on stdin. DuckDB's read_json of the whole
// stream in one CREATE TABLE AS ran out of its 8 GB limit at 100M events
// (2026-11-27, with and without insertion order kept), so the stream is
// cut into parts of kDuckdbPartLines lines, each written to a file beside
// the database and inserted by read_json in its own statement, then removed
// (BENCH_DUCKDB_PART_LINES sets another part size).
// The time counted is the whole: cutting, writing the parts and inserting.
const kDuckdbPartLines = Number(process.env.BENCH_DUCKDB_PART_LINES ?? 5_000_000);

async function loadDuckdb(args) {
  const { connection } = await openDuckdb(args.db);
  const { createWriteStream, rmSync } = await import('node:fs');
  const columns = COLUMNS.map(([name, , type]) => `${name}: '${type}'`).join(', ');
  const table = COLUMNS.map(([name, , type]) => `${name} ${type}`).join(', ');
  const partFile = `${args.db}.part.jsonl`;
  const started = performance.now();
  await connection.run(`SET temp_directory = '${args.db}.tmp'`);
  await connection.run('DROP TABLE IF EXISTS events');
  await connection.run(`CREATE TABLE events (${table})`);
  let part = null;
  let partLines = 0;
  const insertPart = async () => {
    await new Promise((resolve, reject) => part.end((error) => (error ? reject(error) : resolve())));
    await connection.run(`INSERT INTO events SELECT * FROM read_json('${partFile}',
      format = 'newline_delimited', columns = {${columns}})`);
    part = null;
    partLines = 0;
  };
  const write = (bytes) =>
    new Promise((resolve, reject) => {
      if (part === null) part = createWriteStream(partFile);
      part.write(bytes, (error) => (error ? reject(error) : resolve()));
    });
  for await (const chunk of process.stdin) {
    let from = 0;
    while (from < chunk.length) {
      // Copy up to the newline that completes the part, or the whole rest.
      let to = chunk.length;
      let at = from;
      while (partLines < kDuckdbPartLines) {
        const newline = chunk.indexOf(10, at);
        if (newline < 0) break;
        partLines += 1;
        at = newline + 1;
        if (partLines === kDuckdbPartLines) to = at;
      }
      await write(chunk.subarray(from, to));
      from = to;
      if (partLines === kDuckdbPartLines) await insertPart();
    }
  }
  if (part !== null) await insertPart();
  rmSync(partFile, { force: true });
  await connection.run('CHECKPOINT');
  const seconds = (performance.now() - started) / 1000;
  const rows = Number((await connection.runAndReadAll('SELECT count(*) FROM events')).getRows()[0][0]);
  const version = (await connection.runAndReadAll('SELECT version()')).getRows()[0][0];
  connection.closeSync();
  console.log(JSON.stringify({ seconds, rows, version }));
}

async function clickhouseQuery(port, sql) {
  const response = await fetch(`http://127.0.0.1:${port}/?database=bench`, {
    method: 'POST',
    body: `${sql}\nFORMAT JSONCompact`,
  });
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`ClickHouse ${response.status}: ${text.slice(0, 2000)}`);
  }
  return text;
}

async function runQueries(args) {
  const params = {
    fromMs: Number(args['from-ms']),
    toMs: Number(args['to-ms']),
    userIds: readFileSync(args.users, 'utf8').split('\n').filter(Boolean),
  };
  const runs = Number(args.runs ?? 5);
  const engine = args.engine;
  const serverPid = args['server-pid'] ? Number(args['server-pid']) : null;
  if (serverPid && engine !== 'minpanel') {
    throw new Error('--server-pid is for --engine minpanel');
  }
  let execute;
  let version;
  let duck;
  if (engine === 'duckdb') {
    duck = await openDuckdb(args.db);
    execute = async (query, collect) => {
      const reader = await duck.connection.runAndReadAll(query.duckdb);
      return collect ? { rows: reader.getRowsJS(), columns: reader.columnNames() } : null;
    };
    version = (await duck.connection.runAndReadAll('SELECT version()')).getRows()[0][0];
  } else if (engine === 'clickhouse') {
    const port = args['http-port'];
    execute = async (query, collect) => {
      const text = await clickhouseQuery(port, query.clickhouse(args.table));
      if (!collect) {
        return null;
      }
      const parsed = JSON.parse(text);
      return { rows: parsed.data, columns: parsed.meta.map((column) => column.name) };
    };
    version = JSON.parse(await clickhouseQuery(port, 'SELECT version()')).data[0][0];
  } else if (engine === 'minpanel') {
    const authorization = `Basic ${Buffer.from(`${args.secret}:`).toString('base64')}`;
    execute = async (query, collect) => {
      const request = query.minpanelExport
        ? { path: '/api/2.0/export', type: 'application/x-www-form-urlencoded',
            body: new URLSearchParams(query.minpanelExport).toString() }
        : { path: '/api/query', type: 'application/json', body: JSON.stringify(query.minpanel) };
      const response = await fetch(`${args.url}${request.path}`, {
        method: 'POST',
        headers: { Authorization: authorization, 'Content-Type': request.type },
        body: request.body,
      });
      const text = await response.text();
      if (!response.ok) {
        throw new Error(`minpanel ${response.status} on ${request.path}: ${text.slice(0, 2000)}`);
      }
      if (!collect) {
        return null;
      }
      const sha256 = createHash('sha256').update(text).digest('hex');
      return query.minpanelExport
        ? { rows: query.fromMinpanel(text), columns: MINPANEL_EXPORT_COLUMNS, sha256 }
        : { rows: query.fromMinpanel(JSON.parse(text)), columns: null, sha256 };
    };
    version = args.version ?? 'minpanel';
  } else {
    throw new Error(`unknown engine ${engine}`);
  }
  const results = [];
  for (const query of queries(params)) {
    if (engine === 'minpanel' && !query.minpanel && !query.minpanelExport) {
      results.push({ name: query.name, title: query.title, times_ms: [], median_ms: null,
                     canon: null, missing: query.minpanelMissing });
      console.error(`minpanel: ${query.name} skipped: ${query.minpanelMissing}`);
      continue;
    }
    let canon;
    let answerSha256 = null;
    const times = [];
    const cpuTimes = [];
    try {
      const answer = await execute(query, true);  // warm-up, and the answer
      canon = await query.canon(answer.rows, params, answer.columns);
      answerSha256 = answer.sha256 ?? null;
      for (let run = 0; run < runs; ++run) {
        const cpuBefore = serverPid ? processCpuMs(serverPid) : 0;
        const started = performance.now();
        await execute(query, false);
        times.push(performance.now() - started);
        if (serverPid) {
          cpuTimes.push(processCpuMs(serverPid) - cpuBefore);
        }
      }
    } catch (error) {
      // A peer that fails is a broken benchmark; minpanel's engine is still
      // being built, so its failures are recorded and reported instead.
      if (engine !== 'minpanel') {
        throw error;
      }
      const message = String(error.message).trim().split('\n').slice(-3).join(' ');
      results.push({ name: query.name, title: query.title, times_ms: [], median_ms: null,
                     canon: null, error: message });
      console.error(`minpanel: ${query.name} failed: ${message}`);
      continue;
    }
    const cpu = serverPid ? { cpu_ms: cpuTimes, median_cpu_ms: median(cpuTimes) } : {};
    results.push({ name: query.name, title: query.title, times_ms: times, median_ms: median(times),
                   ...cpu, answer_sha256: answerSha256, canon });
    console.error(`${engine}${args.table ? ' ' + args.table : ''}: ${query.name} ${median(times).toFixed(1)} ms` +
                  (serverPid ? `, server CPU ${median(cpuTimes).toFixed(1)} ms` : ''));
  }
  duck?.connection.closeSync();
  const out = { engine, table: args.table ?? null, version, runs, results };
  writeFileSync(args.out, JSON.stringify(out, null, 1));
}

// The table: one row per query; for each engine its median and its ratio to
// the faster peer; ClickHouse as the better of its two sort orders.
function report(args) {
  const dir = args['out-dir'];
  const files = readdirSync(dir).filter((name) => name.startsWith('result-') && name.endsWith('.json'));
  const results = files.map((name) => JSON.parse(readFileSync(`${dir}/${name}`, 'utf8')));
  const loads = JSON.parse(readFileSync(`${dir}/loads.json`, 'utf8'));
  if (results.length === 0) {
    throw new Error(`no result files in ${dir}`);
  }
  // Every engine (and both ClickHouse tables) must give the same answers.
  let disagreements = 0;
  const reference = results[0];
  for (const result of results.slice(1)) {
    for (const [idx, query] of result.results.entries()) {
      if (query.canon === null || reference.results[idx].canon === null) {
        continue;  // a query this engine cannot express yet
      }
      const expected = JSON.stringify(reference.results[idx].canon);
      const actual = JSON.stringify(query.canon);
      if (expected !== actual) {
        ++disagreements;
        console.error(`DISAGREE ${query.name}: ${label(reference)} vs ${label(result)}`);
        console.error(`  ${label(reference)}: ${expected.slice(0, 600)}`);
        console.error(`  ${label(result)}: ${actual.slice(0, 600)}`);
      }
    }
  }
  const engines = ['clickhouse', 'duckdb', 'minpanel'].filter((engine) =>
    results.some((result) => result.engine === engine),
  );
  const lines = [];
  const header = ['query'];
  for (const engine of engines) {
    header.push(`${engine} ms`, `${engine} ÷ faster peer`);
  }
  lines.push(`| ${header.join(' | ')} |`, `|${header.map(() => ' --- ').join('|')}|`);
  const names = reference.results.map((query) => query.name);
  for (const [idx, name] of names.entries()) {
    const best = {};
    const note = {};
    for (const engine of engines) {
      for (const result of results.filter((candidate) => candidate.engine === engine)) {
        const value = result.results[idx].median_ms;
        if (value === null) {
          continue;
        }
        if (best[engine] === undefined || value < best[engine]) {
          best[engine] = value;
          note[engine] = result.table ? ` (${result.table.replace(/^.*events_by_/, 'by ')})` : '';
        }
      }
    }
    const peers = ['clickhouse', 'duckdb'].filter((engine) => best[engine] !== undefined);
    const fasterPeer = Math.min(...peers.map((engine) => best[engine]));
    const row = [reference.results[idx].title];
    for (const engine of engines) {
      if (best[engine] === undefined) {
        row.push('—', '—');
        continue;
      }
      const ratio = Number.isFinite(fasterPeer) ? (best[engine] / fasterPeer).toFixed(2) : '—';
      row.push(`${format(best[engine])}${note[engine]}`, ratio);
    }
    lines.push(`| ${row.join(' | ')} |`);
  }
  for (const result of results) {
    for (const query of result.results) {
      if (query.missing || query.error) {
        lines.push('', `${label(result)}, ${query.name}: ${query.missing ? 'not expressible yet: ' + query.missing : 'failed: ' + query.error}`);
      }
    }
  }
  lines.push('');
  lines.push('| engine | load s | bytes on disk / event | version |');
  lines.push('| --- | --- | --- | --- |');
  for (const load of loads) {
    lines.push(
      `| ${load.engine}${load.table ? ' ' + load.table : ''} | ${load.seconds.toFixed(1)} | ` +
        `${(load.bytes / load.rows).toFixed(1)} | ${load.version} |`,
    );
  }
  for (const load of loads.filter((candidate) => candidate.rss_peak_bytes !== undefined)) {
    const perEvent = (bytes) => (bytes / load.rows).toFixed(1);
    lines.push('', `${load.engine}: server peak RSS (VmHWM after the queries) ` +
      `${(load.rss_peak_bytes / 1048576).toFixed(0)} MiB; on disk ${perEvent(load.segment_bytes)} ` +
      `bytes/event in segments + ${perEvent(load.log_bytes)} in the log ` +
      `(${perEvent(load.bytes)} for the whole data folder); server start ${load.start_seconds.toFixed(1)} s.`);
  }
  lines.push('');
  lines.push(disagreements === 0
    ? `All engines agree on all ${names.length} queries (canonical answers in ${dir}/result-*.json).`
    : `${disagreements} DISAGREEMENTS: see above.`);
  console.log(lines.join('\n'));
  writeFileSync(`${dir}/table.md`, lines.join('\n') + '\n');
  if (disagreements > 0) {
    process.exit(1);
  }
}

function label(result) {
  return result.table ? `${result.engine} ${result.table}` : result.engine;
}

function format(ms) {
  return ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

const args = parseArgs(process.argv.slice(2));
const command = args._[0];
if (command === 'load-duckdb') {
  await loadDuckdb(args);
} else if (command === 'query') {
  await runQueries(args);
} else if (command === 'report') {
  report(args);
} else {
  console.error('usage: node run.mjs load-duckdb|query|report ... (see the comment at the top)');
  process.exit(2);
}
