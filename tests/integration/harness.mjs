// Test harness for the end-to-end tests: starts and stops the real `minpanel`
// binary on 127.0.0.1, creates projects through its CLI, and talks to it over
// real sockets with node:http / node:https. Nothing here is mocked.
//
// Every server lives in its own temporary folder (data/ and keys/ side by side,
// so the keys are outside the data folder as DESIGN.md requires). `cleanup()`
// kills the process and removes the folder; tests call it from `after`, so it
// runs even when an assertion failed.

import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// CTest passes $<TARGET_FILE:minpanel>; by hand the default build folder is used.
export const MINPANEL_BIN = process.env.MINPANEL_BIN
  ? path.resolve(process.env.MINPANEL_BIN)
  : path.join(REPO_ROOT, 'build', 'apps', 'minpanel', 'minpanel');

export const NPM_DIR = path.join(REPO_ROOT, 'tests', 'npm');

// The SDKs are installed by `npm ci --prefix tests/npm`; they are loaded from there.
export function requireFromNpm(name) {
  const require = createRequire(path.join(NPM_DIR, 'package.json'));
  try {
    return require(name);
  } catch (error) {
    throw new Error(`the ${name} npm package is missing: run \`npm ci --prefix tests/npm\` (${error.message})`);
  }
}

export function requireMixpanel() {
  return requireFromNpm('mixpanel');
}

// The SDK routes through HTTP(S)_PROXY when set; tests only ever talk to 127.0.0.1.
for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) {
  delete process.env[name];
}

// A quiet logger for the SDK: it warns about the deprecated `key`/`secret` options.
export const quietLogger = {
  trace() {}, debug() {}, info() {}, warn() {}, error() {},
};

export function assertBinaryExists() {
  if (!fs.existsSync(MINPANEL_BIN)) {
    throw new Error(`minpanel binary not found at ${MINPANEL_BIN} (set MINPANEL_BIN or build it)`);
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function hex32() {
  return crypto.randomBytes(16).toString('hex');
}

export function randomTag(prefix = 't') {
  return `${prefix}-${crypto.randomBytes(6).toString('hex')}`;
}

export function nowSeconds() {
  return Math.floor(Date.now() / 1000);
}

// YYYY-MM-DD in UTC, offset by whole days.
export function isoDate(offsetDays = 0, fromMs = Date.now()) {
  return new Date(fromMs + offsetDays * 86400000).toISOString().slice(0, 10);
}

// If fewer than `marginMs` are left of the current UTC day, waits until the
// next one has begun; at any other time returns at once. For a test whose
// assertions rest on the server's own clock staying in one UTC day from its
// first request to its last — a key's daily export quota, Plausible's daily
// salt, a retention period that begins at midnight — which no event time
// can pin: run just before midnight, the day would turn in the middle of it.
// `marginMs` should exceed the test's span.
export async function clearOfMidnight(marginMs = 30000) {
  const leftMs = 86400000 - (Date.now() % 86400000);
  if (leftMs < marginMs) {
    await sleep(leftMs + 1000);
  }
}

// Picks a free port on 127.0.0.1 outside the kernel's ephemeral range: a
// port from that range can be taken as the local end of some outgoing
// connection while the server is stopped, and a restart on the same port
// would then fail. The server does not accept port 0, so there is still a
// small window in which another process could take the port; startServer
// retries on a failed start.
function ephemeralRange() {
  try {
    const [low, high] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return [low, high];
  } catch {
    return [32768, 60999];
  }
}

async function portIsFree(port) {
  const server = net.createServer();
  try {
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
  } catch {
    return false;
  }
  server.close();
  await once(server, 'close');
  return true;
}

export async function freePort() {
  const [low, high] = ephemeralRange();
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const port = 10000 + crypto.randomInt(50000);
    if (port >= low && port <= high) {
      continue;
    }
    if (await portIsFree(port)) {
      return port;
    }
  }
  throw new Error('no free port outside the ephemeral range');
}

export async function makeTempDir(prefix = 'minpanel-it-') {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

export async function runCli(args, { timeoutMs = 30000 } = {}) {
  try {
    return await execFileAsync(MINPANEL_BIN, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
  } catch (error) {
    error.message = `minpanel ${args.join(' ')} failed: ${error.message}\nstdout: ${error.stdout}\nstderr: ${error.stderr}`;
    throw error;
  }
}

// `minpanel project create NAME --json` prints one JSON line.
export async function createProject(dataDir, keysDir, name) {
  const { stdout } = await runCli(['project', 'create', name, '--data', dataDir, '--keys', keysDir, '--json']);
  const lines = stdout.trim().split('\n').filter((line) => line.trim().length > 0);
  if (lines.length !== 1) {
    throw new Error(`project create printed ${lines.length} lines, expected one JSON line: ${stdout}`);
  }
  const project = JSON.parse(lines[0]);
  for (const field of ['id', 'name', 'token', 'secret']) {
    if (project[field] === undefined || project[field] === '') {
      throw new Error(`project create output lacks "${field}": ${lines[0]}`);
    }
  }
  return project;
}

// Creates a throwaway CA and a server certificate for 127.0.0.1 with the
// openssl CLI. Returns the paths.
export async function makeTlsMaterial(dir) {
  const ca_key = path.join(dir, 'ca.key');
  const ca_cert = path.join(dir, 'ca.pem');
  const key = path.join(dir, 'server.key');
  const csr = path.join(dir, 'server.csr');
  const cert = path.join(dir, 'server.pem');
  const ext = path.join(dir, 'server.ext');
  const run = (args) => execFileAsync('openssl', args, { timeout: 60000 });
  await run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', ca_key, '-out', ca_cert,
    '-days', '2', '-subj', '/CN=minpanel test CA', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  await run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1']);
  await fsp.writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' +
    'keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  await run(['x509', '-req', '-in', csr, '-CA', ca_cert, '-CAkey', ca_key, '-CAcreateserial', '-out', cert,
    '-days', '2', '-extfile', ext]);
  return { caCert: ca_cert, cert, key };
}

// Servers not yet cleaned up. If the test process is interrupted (a timeout's
// SIGTERM, Ctrl-C) the `after` hooks do not run, so kill and remove them here.
const liveServers = new Set();

function cleanupSync() {
  for (const server of liveServers) {
    if (server.child && server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill('SIGKILL');
    }
    if (!process.env.MINPANEL_KEEP_TMP) {
      fs.rmSync(server.root, { recursive: true, force: true });
    }
  }
  liveServers.clear();
}

process.on('exit', cleanupSync);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    cleanupSync();
    process.exit(128 + os.constants.signals[signal]);
  });
}

// One running (or stopped) minpanel server with its own folders.
export class MinpanelServer {
  constructor({ root, dataDir, keysDir, project, tls, configFile, prlimitFsize }) {
    this.root = root;
    this.dataDir = dataDir;
    this.keysDir = keysDir;
    this.project = project;
    this.tls = tls || null;
    this.configFile = configFile || null;
    this.prlimitFsize = prlimitFsize || null;
    this.port = 0;
    this.child = null;
    this.stderrChunks = [];
    this.starts = 0;
    this.exits = [];
    liveServers.add(this);
  }

  get scheme() {
    return this.tls ? 'https' : 'http';
  }

  get host() {
    return `127.0.0.1:${this.port}`;
  }

  get pid() {
    return this.child ? this.child.pid : undefined;
  }

  get alive() {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  // Everything the server wrote to stderr across all its runs.
  get stderr() {
    return Buffer.concat(this.stderrChunks).toString('utf8');
  }

  // Sends SIGHUP and waits until the server logs that it reloaded its
  // configuration (projects, access keys, policies, config file).
  async reload({ timeoutMs = 5000 } = {}) {
    const reloads = () => this.stderr.split('reloaded configuration').length;
    const before = reloads();
    process.kill(this.pid, 'SIGHUP');
    const deadline = Date.now() + timeoutMs;
    while (reloads() === before && Date.now() < deadline) {
      await sleep(25);
    }
    if (reloads() === before) {
      throw new Error(`no reload logged within ${timeoutMs} ms of SIGHUP:\n${this.stderr.slice(-2000)}`);
    }
  }

  serveArgs() {
    const args = ['serve', '--data', this.dataDir, '--keys', this.keysDir, '--listen', `127.0.0.1:${this.port}`];
    if (this.configFile) {
      args.push('--config', this.configFile);
    }
    if (this.tls) {
      args.push('--tls-cert', this.tls.cert, '--tls-key', this.tls.key);
    }
    return args;
  }

  // Starts the binary and waits for GET /healthz to answer 200. Keeps the
  // port of a previous run so clients can reconnect after a restart.
  async start({ timeoutMs = 20000 } = {}) {
    if (this.alive) {
      throw new Error('server already running');
    }
    if (this.port === 0) {
      this.port = await freePort();
    }
    let command = MINPANEL_BIN;
    let args = this.serveArgs();
    if (this.prlimitFsize !== null) {
      // Soft limit only, so it can be raised later without CAP_SYS_RESOURCE.
      // prlimit execs the binary, so the child's pid is the server's pid.
      args = [`--fsize=${this.prlimitFsize}:unlimited`, '--', MINPANEL_BIN, ...args];
      command = 'prlimit';
    }
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.starts += 1;
    const run = this.starts;
    child.stdout.on('data', (chunk) => this.stderrChunks.push(chunk));
    child.stderr.on('data', (chunk) => this.stderrChunks.push(chunk));
    child.on('exit', (code, signal) => this.exits.push({ run, code, signal }));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`minpanel serve exited during start-up (code ${child.exitCode}, signal ${child.signalCode}); ` +
          `stderr tail:\n${this.stderr.slice(-4000)}`);
      }
      try {
        const res = await this.request({ path: '/healthz', timeoutMs: 1000 });
        if (res.status === 200) {
          return;
        }
      } catch {
        // Not listening yet.
      }
      await sleep(25);
    }
    throw new Error(`minpanel did not answer /healthz within ${timeoutMs} ms; stderr tail:\n${this.stderr.slice(-4000)}`);
  }

  // Sends a signal and waits for the process to exit. Returns {code, signal}.
  async stop(signal = 'SIGTERM', { timeoutMs = 20000 } = {}) {
    const child = this.child;
    if (!child) {
      return null;
    }
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exited;
      clearTimeout(timer);
    }
    this.child = null;
    return { code: child.exitCode, signal: child.signalCode };
  }

  async kill() {
    return this.stop('SIGKILL');
  }

  async restart() {
    await this.stop('SIGTERM');
    await this.start();
  }

  async cleanup() {
    liveServers.delete(this);
    try {
      await this.stop('SIGKILL');
    } finally {
      if (!process.env.MINPANEL_KEEP_TMP) {
        await fsp.rm(this.root, { recursive: true, force: true });
      }
    }
  }

  baseUrl() {
    return `${this.scheme}://127.0.0.1:${this.port}`;
  }

  // Raw HTTP(S) request. `body` may be a string or Buffer. Resolves with
  // {status, headers, body: Buffer, text}. Rejects on network errors.
  request({ method = 'GET', path: requestPath = '/', headers = {}, body, timeoutMs = 30000, ca } = {}) {
    return httpRequest({
      scheme: this.scheme,
      port: this.port,
      method,
      path: requestPath,
      headers,
      body,
      timeoutMs,
      ca: ca || (this.tls ? fs.readFileSync(this.tls.caCert) : undefined),
    });
  }

  authHeader(secret = this.project.secret) {
    return { Authorization: basicAuth(`${secret}:`) };
  }

  // POST /import with Basic secret: and a JSON array body.
  importJson(events, { query = '', secret = this.project.secret, timeoutMs } = {}) {
    return this.request({
      method: 'POST',
      path: `/import${query ? `?${query}` : ''}`,
      headers: { ...this.authHeader(secret), 'Content-Type': 'application/json' },
      body: JSON.stringify(events),
      timeoutMs,
    });
  }

  // Reads /api/2.0/export and parses the JSON lines.
  // `reason` is logged with the export; one is required above
  // [limits] export_reason_rows (docs/security.md), so the checks give one.
  // The checks compare exactly the stored rows, so a project secret's export
  // asks for no decoys (watermark=false, which its audit records name)
  // unless `watermark: true`; an access key's (mpk_…) always carries them.
  async exportEvents({
    fromDate = isoDate(-30), toDate = isoDate(2), event, limit, distinctId, secret,
    reason = 'integration test check', watermark,
  } = {}) {
    const params = new URLSearchParams({ from_date: fromDate, to_date: toDate, reason });
    if (watermark === false || (watermark === undefined && !String(secret ?? '').startsWith('mpk_'))) {
      params.set('watermark', 'false');
    }
    if (event !== undefined) {
      params.set('event', JSON.stringify(event));
    }
    if (limit !== undefined) {
      params.set('limit', String(limit));
    }
    if (distinctId !== undefined) {
      params.set('distinct_id', distinctId);
    }
    const res = await this.request({
      path: `/api/2.0/export?${params}`,
      headers: this.authHeader(secret),
      timeoutMs: 120000,
    });
    if (res.status !== 200) {
      throw new Error(`export answered ${res.status}: ${res.text.slice(0, 500)}`);
    }
    return parseJsonLines(res.text);
  }
}

export function parseJsonLines(text) {
  const rows = [];
  for (const line of text.split('\n')) {
    if (line.trim().length === 0) {
      continue;
    }
    rows.push(JSON.parse(line));
  }
  return rows;
}

export function basicAuth(userColonPassword) {
  return `Basic ${Buffer.from(userColonPassword).toString('base64')}`;
}

// Plain keep-alive-free requests: each request has its own connection, so a
// killed server never leaves a stale pooled socket behind.
export function httpRequest({ scheme = 'http', port, method = 'GET', path: requestPath = '/', headers = {}, body,
  timeoutMs = 30000, ca, localAddress }) {
  const lib = scheme === 'https' ? https : http;
  const payload = body === undefined ? undefined : (Buffer.isBuffer(body) ? body : Buffer.from(body));
  const allHeaders = { ...headers };
  if (payload !== undefined && allHeaders['Content-Length'] === undefined) {
    allHeaders['Content-Length'] = payload.length;
  }
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (fn, value) => {
      if (!settled) {
        settled = true;
        fn(value);
      }
    };
    const req = lib.request({
      host: '127.0.0.1',
      port,
      method,
      path: requestPath,
      headers: allHeaders,
      agent: false,
      ca,
      localAddress,
      timeout: timeoutMs,
    }, (res) => {
      const chunks = [];
      res.on('data', (chunk) => chunks.push(chunk));
      res.on('end', () => {
        const buffer = Buffer.concat(chunks);
        finish(resolve, { status: res.statusCode, headers: res.headers, body: buffer, text: buffer.toString('utf8') });
      });
      res.on('error', (error) => finish(reject, error));
    });
    req.on('timeout', () => req.destroy(new Error(`request ${method} ${requestPath} timed out after ${timeoutMs} ms`)));
    // A server may answer (e.g. 413) and close before the whole body is
    // written; the write then fails, but the response is what counts.
    req.on('error', (error) => setTimeout(() => finish(reject, error), 200));
    if (payload !== undefined) {
      req.end(payload);
    } else {
      req.end();
    }
  });
}

// Creates the folders and a project, then starts the server.
export async function startServer({ projectName = 'it-project', tls = false, configText, prlimitFsize } = {}) {
  assertBinaryExists();
  const root = await makeTempDir();
  const dataDir = path.join(root, 'data');
  const keysDir = path.join(root, 'keys');
  await fsp.mkdir(dataDir, { recursive: true });
  await fsp.mkdir(keysDir, { recursive: true, mode: 0o700 });
  let server;
  try {
    const project = await createProject(dataDir, keysDir, projectName);
    let tlsMaterial = null;
    if (tls) {
      const tlsDir = path.join(root, 'tls');
      await fsp.mkdir(tlsDir);
      tlsMaterial = await makeTlsMaterial(tlsDir);
    }
    let configFile = null;
    if (configText !== undefined) {
      configFile = path.join(root, 'minpanel.toml');
      await fsp.writeFile(configFile, configText);
    }
    server = new MinpanelServer({ root, dataDir, keysDir, project, tls: tlsMaterial, configFile, prlimitFsize });
    // A port taken between freePort() and bind() shows up as a failed start.
    for (let attempt = 1; ; attempt += 1) {
      try {
        await server.start();
        break;
      } catch (error) {
        await server.stop('SIGKILL');
        if (attempt >= 3) {
          throw error;
        }
        server.port = 0;
      }
    }
    return server;
  } catch (error) {
    if (server) {
      await server.cleanup();
    } else {
      await fsp.rm(root, { recursive: true, force: true });
    }
    throw error;
  }
}

// Properties every test expects the server to drop before storing.
// The default privacy policy keeps `$current_url` generalised (scheme, host,
// path and utm_* parameters). `mp_lib` is kept too, but the SDK adds it on
// some calls only, so comparisons leave it out (freeProperties).
export const DROPPED_PROPERTIES = new Set([
  'token', 'distinct_id', 'time', '$insert_id', 'ip', '$ip', 'mp_lib',
  '$email', '$name', '$first_name', '$last_name', '$phone',
]);

// The page URL as the default policy stores it, for the fixtures' simple
// URLs (no ids in the path): the query keeps only utm_* parameters, the
// fragment goes.
export function expectedGeneralisedUrl(url) {
  const parsed = new URL(url);
  const kept = [...parsed.searchParams.entries()].filter(([name]) => name.toLowerCase().startsWith('utm_'));
  const query = kept.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&');
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}${query ? `?${query}` : ''}`;
}

// What the export should hold for the properties a client sent: the dropped
// names removed, nested objects flattened with '.', arrays as lists of strings.
export function expectedStoredProperties(sent) {
  const out = {};
  const walk = (prefix, object, top) => {
    for (const [key, value] of Object.entries(object)) {
      if (top && DROPPED_PROPERTIES.has(key)) {
        continue;
      }
      const name = prefix ? `${prefix}.${key}` : key;
      if (top && key === '$current_url' && typeof value === 'string') {
        out[name] = expectedGeneralisedUrl(value);
      } else if (Array.isArray(value)) {
        out[name] = value.map((item) => String(item));
      } else if (value !== null && typeof value === 'object') {
        walk(name, value, false);
      } else {
        out[name] = value;
      }
    }
  };
  walk('', sent, true);
  return out;
}

// The exported properties without the fields every row carries, and the
// stored subject a row has when it differs from its person
// (`$distinct_id_before_identity`, docs/identity.md).
export function freeProperties(row) {
  const rest = { ...row.properties };
  delete rest.time;
  delete rest.distinct_id;
  delete rest.$insert_id;
  delete rest.mp_lib;
  delete rest.$distinct_id_before_identity;
  return rest;
}

export const PSEUDONYM_RE = /^psn_[0-9a-f]{32}$/;
export const INSERT_ID_RE = /^[0-9a-f]{32}$/;

// Every regular file under `dir`, recursively, sorted.
export async function listFiles(dir) {
  const files = [];
  const walk = async (current) => {
    for (const entry of await fsp.readdir(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        await walk(full);
      } else if (entry.isFile()) {
        files.push(full);
      }
    }
  };
  await walk(dir);
  return files.sort();
}

// Searches every file under `dir` for each needle (as bytes).
// Returns the list of {needle, file} hits.
export async function grepTree(dir, needles) {
  const hits = [];
  const buffers = needles.map((needle) => Buffer.from(needle));
  for (const file of await listFiles(dir)) {
    const content = await fsp.readFile(file);
    buffers.forEach((needle, index) => {
      if (content.includes(needle)) {
        hits.push({ needle: needles[index], file: path.relative(dir, file) });
      }
    });
  }
  return hits;
}

// Runs a function in a child node process (used for HTTPS with the SDK, which
// has no option for a CA: NODE_EXTRA_CA_CERTS is read at process start).
export async function runNodeChild(scriptPath, input, { env = {}, timeoutMs = 120000 } = {}) {
  const child = spawn(process.execPath, [scriptPath], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const stdout = [];
  const stderr = [];
  child.stdout.on('data', (chunk) => stdout.push(chunk));
  child.stderr.on('data', (chunk) => stderr.push(chunk));
  child.stdin.end(JSON.stringify(input));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code, signal] = await once(child, 'exit');
  clearTimeout(timer);
  const out = Buffer.concat(stdout).toString('utf8');
  const err = Buffer.concat(stderr).toString('utf8');
  if (code !== 0) {
    throw new Error(`child ${path.basename(scriptPath)} exited with ${code ?? signal}\nstdout: ${out}\nstderr: ${err}`);
  }
  return JSON.parse(out.trim().split('\n').pop());
}

// Classifies an ingest answer as a refusal: a 4xx, or the Mixpanel failure
// body (`0`, or `{"status":0,...}` with verbose=1).
export function isRefusal(res) {
  if (res.status >= 400 && res.status < 500) {
    return true;
  }
  if (res.status >= 500) {
    return false;
  }
  const text = res.text.trim();
  if (text === '0') {
    return true;
  }
  try {
    const json = JSON.parse(text);
    return json !== null && typeof json === 'object' && json.status === 0;
  } catch {
    return false;
  }
}

// Sends a request over a bare socket: the head first, then (after
// `bodyDelayMs`) `bodyBytes` bytes of `fill`, plainly or chunked. Resolves
// with everything the server sent before it closed, even when the close reset
// the connection while the body was still being written (a server that
// refuses an oversize body answers and closes early, and a regular HTTP
// client then often loses the answer to EPIPE/ECONNRESET).
export function rawHttpExchange({ port, head, bodyBytes = 0, chunked = false, fill = 0x61, bodyDelayMs = 300,
  timeoutMs = 60000 }) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const received = [];
    let sent = 0;
    let closed = false;
    let error = null;
    const chunk = Buffer.alloc(1 << 16, fill);
    const finish = () => {
      clearTimeout(timer);
      const text = Buffer.concat(received).toString('latin1');
      const statusMatch = text.match(/^HTTP\/1\.[01] (\d{3})/);
      resolve({ status: statusMatch ? Number(statusMatch[1]) : null, text, sent, error });
    };
    const timer = setTimeout(() => socket.destroy(new Error('timed out')), timeoutMs);
    socket.on('data', (data) => received.push(data));
    socket.on('error', (err) => {
      error = err.code || err.message;
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
    const pump = () => {
      while (!closed && sent < bodyBytes) {
        const size = Math.min(chunk.length, bodyBytes - sent);
        const piece = chunk.subarray(0, size);
        sent += size;
        const ok = chunked
          ? socket.write(Buffer.concat([Buffer.from(`${size.toString(16)}\r\n`), piece, Buffer.from('\r\n')]))
          : socket.write(piece);
        if (!ok) {
          socket.once('drain', pump);
          return;
        }
      }
      if (!closed && chunked) {
        socket.write('0\r\n\r\n');
      }
    };
    socket.write(head);
    setTimeout(pump, bodyDelayMs);
  });
}

// Every form the store or a dump might hold a pseudonym in: its text, bare
// hex, and its 16 bytes in either byte order of either half.
export function needlesOf(pseudonym) {
  const hex = pseudonym.slice(4);
  const bytes = Buffer.from(hex, 'hex');
  const high = bytes.subarray(0, 8);
  const low = bytes.subarray(8, 16);
  const reversed = (buffer) => Buffer.from(buffer).reverse();
  return [
    Buffer.from(pseudonym), Buffer.from(hex), Buffer.from(hex.toUpperCase()), bytes,
    Buffer.concat([reversed(high), reversed(low)]), Buffer.concat([reversed(low), reversed(high)]),
    Buffer.concat([low, high]),
  ];
}

// Where any of `pseudonyms` is found: in the raw bytes of every file of the
// data folder, and in the `minpanel debug dump` of every store file (the
// erasure and backup tests).
export async function findPseudonyms(dataDir, pseudonyms) {
  const needles = pseudonyms.flatMap((pseudonym) => needlesOf(pseudonym).map((needle) => ({ pseudonym, needle })));
  const hits = [];
  let dumped = 0;
  for (const file of await listFiles(dataDir)) {
    const content = await fsp.readFile(file);
    for (const { pseudonym, needle } of needles) {
      if (content.includes(needle)) {
        hits.push(`${path.relative(dataDir, file)} holds ${pseudonym} (raw)`);
      }
    }
    const name = path.basename(file);
    if (file.includes(`${path.sep}store${path.sep}`) && !name.endsWith('.tmp') && name !== 'LOCK' && content.length > 0) {
      const { stdout } = await runCli(['debug', 'dump', file], { timeoutMs: 60000 }).catch((error) => error);
      dumped += 1;
      for (const pseudonym of pseudonyms) {
        const hex = pseudonym.slice(4);
        if (stdout.includes(hex) || stdout.toLowerCase().includes(hex)) {
          hits.push(`${path.relative(dataDir, file)} holds ${pseudonym} (decoded)`);
        }
      }
    }
  }
  return { hits, dumped };
}
