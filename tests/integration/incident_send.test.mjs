// `minpanel incident send` end to end (issue 7, "optional delivery over
// SMTP"): the real binary delivers the notices a real `incident crossref`
// wrote (generated people) to a real SMTP server that the test starts —
// Debian's python3-aiosmtpd (smtp_server.py), with STARTTLS under a
// throwaway CA and a login. Every message must arrive once, with exactly the
// bytes of its .eml, to the address of its To: header; a run killed with
// SIGKILL resumes without a duplicate; the rate limit holds between
// arrivals; a dry run sends and writes nothing; refusals are recorded and
// the rest go on; each failure says what failed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { MINPANEL_BIN, REPO_ROOT, createProject, freePort, makeTlsMaterial, runCli, sleep } from './harness.mjs';
import { generate, write } from '../../bench/incident_generate.mjs';

const PYTHON = '/usr/bin/python3';  // Debian's, which has aiosmtpd (scripts/setup.sh)
const SERVER = path.join(REPO_ROOT, 'tests', 'integration', 'smtp_server.py');
const SENDER = 'bounces@example.com';

// Runs minpanel; resolves with the exit code and both streams whatever the code.
function minpanel(args, { env = {}, timeoutMs = 60000 } = {}) {
  return new Promise((resolve) => {
    execFile(MINPANEL_BIN, args, { timeout: timeoutMs, env: { ...process.env, ...env }, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (error.code ?? error.signal) : 0, stdout, stderr });
      });
  });
}

const servers = new Set();

// Starts smtp_server.py on a free port; resolves once it accepts connections.
async function startSmtp(dir, extra = []) {
  const port = await freePort();
  const out = fs.mkdtempSync(path.join(dir, 'mailbox-'));
  const child = spawn(PYTHON, [SERVER, '--port', String(port), '--out', out, ...extra],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  await new Promise((resolve, reject) => {
    let stdout = '';
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (stdout.includes(`listening ${port}`)) {
        resolve();
      }
    });
    child.on('exit', (code) => reject(new Error(`smtp_server.py exited ${code}: ${stderr}`)));
  });
  const server = {
    port,
    url: `smtp://127.0.0.1:${port}`,
    // What arrived, in order of arrival.
    messages() {
      return fs.readdirSync(out).filter((name) => name.endsWith('.json')).sort()
        .map((name) => {
          const record = JSON.parse(fs.readFileSync(path.join(out, name), 'utf8'));
          return { ...record, content: Buffer.from(record.content_b64, 'base64') };
        });
    },
    async stop() {
      servers.delete(server);
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await new Promise((resolve) => child.on('exit', resolve));
      }
    },
  };
  servers.add(server);
  return server;
}

// The notices of an output folder: relative path -> bytes and recipient.
function notices(folder) {
  const found = new Map();
  for (const kind of ['users', 'admins']) {
    for (const name of fs.readdirSync(path.join(folder, 'notices', kind)).sort()) {
      const file = `notices/${kind}/${name}`;
      const bytes = fs.readFileSync(path.join(folder, file));
      const to = /^To: <([^>]+)>\r$/m.exec(bytes.toString('utf8'))[1];
      found.set(file, { bytes, to });
    }
  }
  return found;
}

// Which notice a delivered message is: its Message-ID names the file
// (<uNNNNNNNN.RUN_TIME@DOMAIN>).
function fileOf(message) {
  const id = /^Message-ID: <([^.@]+)\.\d+@/m.exec(message.content.toString('utf8'))[1];
  return `notices/${id.startsWith('u') ? 'users' : 'admins'}/${id}.eml`;
}

function stateLines(folder) {
  const text = fs.readFileSync(path.join(folder, 'send-state'), 'utf8');
  return text.split('\n').slice(1).filter(Boolean).map((line) => {
    const [outcome, file, sha256, time, code] = line.split(' ');
    return { outcome, file, sha256, time: Number(time), code: Number(code) };
  });
}

function lastOutcomes(folder) {
  const last = new Map();
  for (const line of stateLines(folder)) {
    last.set(line.file, line.outcome);
  }
  return last;
}

function linesOf(stdout, word) {
  return stdout.split('\n').filter((line) => line.startsWith(`${word} `)).map((line) => line.split(' ')[1]);
}

describe('incident send', () => {
  let dir;
  let base;      // the crossref's output folder, copied for each test
  let expected;  // its notices
  let tls;
  let copies = 0;

  const copy = () => {
    const folder = path.join(dir, `out-${++copies}`);
    fs.cpSync(base, folder, { recursive: true });
    return folder;
  };
  const send = (folder, server, extra = [], options = {}) => minpanel(['incident', 'send', '--out', folder,
    '--smtp', server.url, '--sender', SENDER, ...extra], options);

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'minpanel-send-'));
    const data = generate({ accounts: 40, leaked: 30, seed: 23 });
    write(dir, data, 'csv');
    base = path.join(dir, 'crossref');
    await runCli(['incident', 'crossref', '--leaked', path.join(dir, 'leaked.csv'),
      '--accounts', path.join(dir, 'accounts.csv'), '--orgs', path.join(dir, 'orgs.csv'), '--out', base,
      '--company', 'Example Ltd', '--domain', 'example.com', '--detected', '2026-11-20T10:00:00Z']);
    expected = notices(base);
    assert.ok(expected.size >= 20, `only ${expected.size} notices`);
    tls = await makeTlsMaterial(dir);
  });
  after(async () => {
    for (const server of [...servers]) {
      await server.stop();
    }
    if (!process.env.MINPANEL_KEEP_TMP) {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('delivers every notice once, byte for byte, over STARTTLS with a login; a rerun sends nothing', async () => {
    const server = await startSmtp(dir, ['--tls-cert', tls.cert, '--tls-key', tls.key, '--auth', 'mailer:pa:ss word']);
    const folder = copy();
    const auth = path.join(dir, 'smtp-auth');
    fs.writeFileSync(auth, 'mailer:pa:ss word\n', { mode: 0o600 });
    const dataDir = path.join(dir, 'data');
    await createProject(dataDir, path.join(dir, 'keys'), 'send-it');

    const run = await send(folder, server, ['--ca-file', tls.caCert, '--auth-file', auth, '--per-minute', '6000',
      '--data', dataDir]);
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(linesOf(run.stdout, 'sent').sort(), [...expected.keys()].sort());
    const messages = server.messages();
    assert.equal(messages.length, expected.size);
    const seen = new Set();
    for (const message of messages) {
      const file = fileOf(message);
      assert.ok(!seen.has(file), `${file} arrived twice`);
      seen.add(file);
      const notice = expected.get(file);
      assert.ok(notice.bytes.equals(message.content), `${file}: the bytes differ`);
      assert.deepEqual(message.rcpt_tos, [notice.to]);
      assert.equal(message.mail_from, SENDER);
      assert.equal(message.tls, true);
      assert.equal(message.authenticated, true);
    }

    // The state file: private, one sent line per notice, no address.
    const state = path.join(folder, 'send-state');
    assert.equal(fs.statSync(state).mode & 0o777, 0o600);
    assert.doesNotMatch(fs.readFileSync(state, 'utf8'), /@/);
    assert.deepEqual([...lastOutcomes(folder).values()].filter((outcome) => outcome !== 'sent'), []);

    const again = await send(folder, server, ['--ca-file', tls.caCert, '--auth-file', auth]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(linesOf(again.stdout, 'already-sent').length, expected.size);
    assert.equal(server.messages().length, expected.size);

    // The run is in the audit log: counts, never an address or a password.
    const { stdout } = await runCli(['audit', 'show', '--act', 'incident.send', '--data', dataDir]);
    const records = stdout.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line));
    assert.equal(records.length, 1);
    assert.equal(records[0].act, 'incident.send');
    assert.equal(records[0].rows, expected.size);
    assert.match(records[0].outcome, new RegExp(`^sent ${expected.size}, refused 0`));
    assert.doesNotMatch(stdout, /@|pa:ss/);
    assert.doesNotMatch(run.stdout + run.stderr, /@|pa:ss/);
    await server.stop();
  });

  it('a dry run lists what would be sent and sends and writes nothing', async () => {
    const server = await startSmtp(dir);
    const folder = copy();
    const dry = await send(folder, server, ['--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.deepEqual(linesOf(dry.stdout, 'would-send'), [...expected.keys()]);
    assert.match(dry.stderr, /dry run, nothing sent/);
    assert.equal(fs.existsSync(path.join(folder, 'send-state')), false);
    assert.equal(server.messages().length, 0);

    // After a partial run the dry run tells the sent from the rest.
    const first = [...expected.keys()].slice(0, 3);
    const state = `minpanel-send-state 1\n${first.map((file) => `sent ${file} ${'0'.repeat(64)} 1 250\n`).join('')}`;
    fs.writeFileSync(path.join(folder, 'send-state'), state, { mode: 0o600 });
    const partial = await send(folder, server, ['--dry-run']);
    assert.equal(partial.code, 0, partial.stderr);
    // Their bytes are not those recorded: edited after they were sent.
    assert.deepEqual(linesOf(partial.stdout, 'changed-after-sent'), first);
    assert.equal(linesOf(partial.stdout, 'would-send').length, expected.size - 3);
    assert.equal(fs.readFileSync(path.join(folder, 'send-state'), 'utf8'), state);
    assert.equal(server.messages().length, 0);
    await server.stop();
  });

  it('a refused recipient is recorded and the rest go on; a deferred one is sent by the next run', async () => {
    const files = [...expected.keys()];
    const refused = expected.get(files[1]).to;
    const deferred = expected.get(files[4]).to;
    const rejected = expected.get(files[7]).to;
    const server = await startSmtp(dir, ['--refuse', refused, '--defer', deferred, '--reject-data', rejected]);
    const folder = copy();
    const run = await send(folder, server, ['--insecure-localhost', '--per-minute', '6000']);
    assert.equal(run.code, 3, run.stderr);  // some not delivered
    const toOf = (file) => expected.get(file).to;
    const isRefused = (file) => [refused, rejected].includes(toOf(file));
    assert.deepEqual(linesOf(run.stdout, 'refused'), files.filter(isRefused));
    assert.deepEqual(linesOf(run.stdout, 'unsent'), files.filter((file) => toOf(file) === deferred));
    const delivered = files.filter((file) => !isRefused(file) && toOf(file) !== deferred);
    assert.deepEqual(server.messages().map(fileOf).sort(), [...delivered].sort());
    const outcomes = lastOutcomes(folder);
    assert.equal(outcomes.get(files[1]), 'refused');
    assert.equal(outcomes.get(files[4]), 'unsent');
    assert.equal(outcomes.get(files[7]), 'refused');
    assert.match(run.stdout, new RegExp(`^refused ${files[1]} 550$`, 'm'));
    assert.match(run.stdout, new RegExp(`^refused ${files[7]} 554$`, 'm'));
    assert.match(run.stdout, new RegExp(`^unsent ${files[4]} 451$`, 'm'));
    await server.stop();

    // The next run, to a server that takes everyone: only the deferred go.
    const open = await startSmtp(dir);
    const next = await send(folder, open, ['--insecure-localhost', '--per-minute', '6000']);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(linesOf(next.stdout, 'sent'), files.filter((file) => toOf(file) === deferred));
    assert.deepEqual(linesOf(next.stdout, 'already-refused'), files.filter(isRefused));
    assert.deepEqual(open.messages().map(fileOf), files.filter((file) => toOf(file) === deferred));
    await open.stop();
  });

  it('holds the rate limit between arrivals, and keeps it across a rerun', async () => {
    const server = await startSmtp(dir);
    const folder = copy();
    const perMinute = 300;  // one message every 200 ms
    const run = await send(folder, server, ['--insecure-localhost', '--per-minute', String(perMinute)]);
    assert.equal(run.code, 0, run.stderr);
    const arrived = server.messages().map((message) => message.arrived_ms);
    assert.equal(arrived.length, expected.size);
    const interval = 60000 / perMinute;
    for (let index = 1; index < arrived.length; ++index) {
      // Each message starts at least `interval` after the previous one was
      // answered, so arrivals are at least that far apart (a millisecond
      // of slack for the two processes' clock reads).
      assert.ok(arrived[index] - arrived[index - 1] >= interval - 1,
        `messages ${index - 1} and ${index} arrived ${arrived[index] - arrived[index - 1]} ms apart`);
    }
    // A rerun right after waits out the interval from the last one recorded.
    const pending = path.join(folder, 'send-state');
    const lines = fs.readFileSync(pending, 'utf8').trimEnd().split('\n');
    const last = lines.pop();
    const sending = lines.pop();
    fs.writeFileSync(pending, [...lines, ''].join('\n'));  // the last notice is not sent yet
    assert.match(sending, /^sending /);
    const before = Date.now();
    fs.appendFileSync(pending, `unsent ${last.split(' ')[1]} ${last.split(' ')[2]} ${before} 0\n`);
    const rerun = await send(folder, server, ['--insecure-localhost', '--per-minute', String(perMinute)]);
    assert.equal(rerun.code, 0, rerun.stderr);
    const all = server.messages();
    assert.equal(all.length, expected.size + 1);
    assert.ok(all.at(-1).arrived_ms - before >= interval - 1,
      `the rerun sent ${all.at(-1).arrived_ms - before} ms after the last recorded message`);
    await server.stop();
  });

  it('a run killed with SIGKILL resumes and no notice arrives twice', async () => {
    const server = await startSmtp(dir);
    const folder = copy();
    const child = spawn(MINPANEL_BIN, ['incident', 'send', '--out', folder, '--smtp', server.url, '--sender', SENDER,
      '--insecure-localhost', '--per-minute', '120'], { stdio: 'ignore' });
    const deadline = Date.now() + 60000;
    while (server.messages().length < 3 && Date.now() < deadline) {
      await sleep(20);
    }
    await sleep(100);  // inside the 500 ms pause, as a rule; the test also holds if not
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('exit', resolve));
    const beforeRerun = server.messages().length;
    assert.ok(beforeRerun >= 3 && beforeRerun < expected.size, `${beforeRerun} arrived before the kill`);

    const rerun = await send(folder, server, ['--insecure-localhost', '--per-minute', '6000']);
    assert.equal(rerun.code, 0, rerun.stderr);
    const uncertain = linesOf(rerun.stdout, 'uncertain');
    // A kill between the server's answer and the record leaves one notice
    // uncertain: it is not sent again (the server has it, or not).
    assert.ok(uncertain.length <= 1, rerun.stdout);
    const counts = new Map();
    for (const message of server.messages()) {
      counts.set(fileOf(message), (counts.get(fileOf(message)) ?? 0) + 1);
    }
    for (const file of expected.keys()) {
      if (uncertain.includes(file)) {
        assert.ok((counts.get(file) ?? 0) <= 1, `${file} arrived twice`);
      } else {
        assert.equal(counts.get(file), 1, `${file} arrived ${counts.get(file) ?? 0} times`);
      }
    }
    assert.equal(linesOf(rerun.stdout, 'already-sent').length, beforeRerun - (uncertain.length && counts.get(uncertain[0]) ? 1 : 0));
    await server.stop();
  });

  it('a notice left uncertain by a crash is sent again only when asked; one edited after it was sent never', async () => {
    const server = await startSmtp(dir);
    const folder = copy();
    const first = await send(folder, server, ['--insecure-localhost', '--per-minute', '6000']);
    assert.equal(first.code, 0, first.stderr);
    const files = [...expected.keys()];
    // A crash after the server took the message and before its outcome
    // was recorded leaves `sending` as the notice's last line.
    const lines = stateLines(folder);
    const sent = lines.find((line) => line.file === files[2] && line.outcome === 'sent');
    fs.appendFileSync(path.join(folder, 'send-state'), `sending ${files[2]} ${sent.sha256} ${Date.now()} 0\n`);
    // And a torn line from a crash mid-append.
    const torn = `sent ${files[3]} 12`;
    fs.appendFileSync(path.join(folder, 'send-state'), torn);
    // One notice edited after it was sent.
    fs.appendFileSync(path.join(folder, files[5]), 'P.S.\r\n');

    const careful = await send(folder, server, ['--insecure-localhost']);
    assert.equal(careful.code, 0, careful.stderr);
    assert.deepEqual(linesOf(careful.stdout, 'uncertain'), [files[2]]);
    assert.deepEqual(linesOf(careful.stdout, 'changed-after-sent'), [files[5]]);
    assert.match(careful.stderr, /1 notices are uncertain/);
    assert.match(careful.stderr, new RegExp(`torn line \\(${torn.length} bytes`));
    assert.equal(server.messages().length, expected.size);
    assert.doesNotMatch(fs.readFileSync(path.join(folder, 'send-state'), 'utf8'), / 12$/);

    const resend = await send(folder, server, ['--insecure-localhost', '--resend-uncertain']);
    assert.equal(resend.code, 0, resend.stderr);
    assert.deepEqual(linesOf(resend.stdout, 'sent'), [files[2]]);
    assert.equal(server.messages().length, expected.size + 1);
    assert.equal(lastOutcomes(folder).get(files[2]), 'sent');
    await server.stop();
  });

  it('says what failed: unreachable server, no STARTTLS, an untrusted certificate, a refused login, bad flags', async () => {
    const folder = copy();
    const closed = { url: `smtp://127.0.0.1:${await freePort()}` };
    let run = await send(folder, closed, ['--insecure-localhost']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cannot reach the SMTP server \(smtp:\/\/127\.0\.0\.1:\d+/);

    const plain = await startSmtp(dir);
    run = await send(folder, plain);
    assert.match(run.stderr, /does not offer STARTTLS/);
    assert.equal(plain.messages().length, 0);
    await plain.stop();

    const secured = await startSmtp(dir, ['--tls-cert', tls.cert, '--tls-key', tls.key, '--auth', 'mailer:right']);
    run = await send(folder, secured);
    assert.match(run.stderr, /TLS with the SMTP server failed.*--ca-file/);
    run = await send(folder, secured, ['--ca-file', tls.caCert], { env: { MINPANEL_SMTP_USER: 'mailer', MINPANEL_SMTP_PASSWORD: 'wrong' } });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /refused the login \(reply 535\)/);
    assert.doesNotMatch(run.stderr + run.stdout, /wrong/);
    run = await send(folder, secured, ['--ca-file', tls.caCert]);
    assert.match(run.stderr, /takes no mail before a login or STARTTLS \(reply 530\)/);
    assert.equal(secured.messages().length, 0);
    // Every attempt was recorded as not sent: nothing is uncertain.
    assert.deepEqual([...new Set(lastOutcomes(folder).values())], ['unsent']);
    await secured.stop();

    const auth = path.join(dir, 'loose-auth');
    fs.writeFileSync(auth, 'mailer:right\n', { mode: 0o644 });
    fs.chmodSync(auth, 0o644);
    run = await send(folder, closed, ['--auth-file', auth]);
    assert.match(run.stderr, /readable by group or others; chmod 600 it/);
    run = await send(folder, { url: 'smtp://mailer:right@127.0.0.1:25' }, []);
    assert.match(run.stderr, /no credentials in the URL/);
    run = await send(folder, { url: 'smtp://mail.example.com:25' }, ['--insecure-localhost']);
    assert.match(run.stderr, /--insecure-localhost: the host must be/);
    run = await send(folder, { url: 'http://127.0.0.1:25' }, []);
    assert.match(run.stderr, /the scheme must be smtp/);
    run = await send(folder, closed, ['--per-minute', '100000']);
    assert.match(run.stderr, /--per-minute: from 1 to kSendPerMinuteMax \(6000\)/);
    run = await minpanel(['incident', 'send', '--out', folder, '--smtp', closed.url, '--sender', 'not an address']);
    assert.match(run.stderr, /--sender: one email address/);

    // A notice that cannot be sent stops the run before anything is sent.
    const broken = copy();
    const victim = path.join(broken, [...expected.keys()][0]);
    fs.writeFileSync(victim, fs.readFileSync(victim, 'utf8').replace(/^To: <([^>]+)>\r$/m, 'To: <$1>, <x@example.org>\r'));
    run = await send(broken, closed, ['--insecure-localhost']);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /notices\/users\/u00000001\.eml: cannot be sent: To: one address/);
    assert.equal(fs.readFileSync(path.join(broken, 'send-state'), 'utf8'), 'minpanel-send-state 1\n');
  });
});
