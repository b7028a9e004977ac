// Explicit pseudonym-key rotation on a running server: `minpanel project
// rotate-key` replaces the key file beside it, SIGHUP makes the server read
// it, and the same person's next event gets a new subject made by key
// version 2, while the old key stays in the key folder (or is destroyed).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';

import { hex32, nowSeconds, PSEUDONYM_RE, runCli, startServer } from './harness.mjs';

async function importOne(server, name, distinctId) {
  const res = await server.importJson([{
    event: name,
    properties: { distinct_id: distinctId, time: nowSeconds(), $insert_id: hex32(), plan: 'pro' },
  }]);
  assert.equal(res.status, 200, res.text);
}

// Every event of the write-ahead log as `minpanel debug dump` prints it:
// {name, subject (hex), keyVersion}.
async function dumpedEvents(server) {
  const walDir = path.join(server.dataDir, 'store', 'wal');
  const events = [];
  for (const file of (await fsp.readdir(walDir)).filter((name) => name.endsWith('.log')).sort()) {
    const { stdout } = await runCli(['debug', 'dump', path.join(walDir, file)]);
    for (const match of stdout.matchAll(/^ {2}event (\S+) .*subject=([0-9a-f]{32}) .*key_version=(\d+)/gm)) {
      events.push({ name: match[1], subject: match[2], keyVersion: Number(match[3]) });
    }
  }
  return events;
}

describe('pseudonym key rotation', () => {
  let server;
  before(async () => {
    server = await startServer({ projectName: 'rotating' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('refuses without --yes and explains the consequence', async () => {
    await importOne(server, 'Warmup', 'user-warmup');
    const keyFile = path.join(server.keysDir, `project-${server.project.id}.key`);
    const before = await fsp.readFile(keyFile);
    await assert.rejects(
      runCli(['project', 'rotate-key', 'rotating', '--data', server.dataDir, '--keys', server.keysDir]),
      (error) => error.code === 2 && /anonymisation step/.test(error.stderr) && /--yes/.test(error.stderr));
    assert.deepEqual(await fsp.readFile(keyFile), before, 'the key is unchanged');
  });

  it('gives the same person a new subject under key version 2 after SIGHUP', async () => {
    const id = server.project.id;
    const keyFile = path.join(server.keysDir, `project-${id}.key`);
    await importOne(server, 'BeforeRotation', 'user-rot');
    const oldKey = await fsp.readFile(keyFile);

    const { stdout } = await runCli(['project', 'rotate-key', 'rotating', '--yes',
      '--data', server.dataDir, '--keys', server.keysDir]);
    assert.match(stdout, /version 1 -> 2/);
    const keptFile = path.join(server.keysDir, `project-${id}.v1.key`);
    assert.deepEqual(await fsp.readFile(keptFile), oldKey, 'the old key is kept byte for byte');
    assert.equal(fs.statSync(keptFile).mode & 0o777, 0o600);

    await server.reload();
    await importOne(server, 'AfterRotation', 'user-rot');

    const rows = await server.exportEvents();
    const beforeRow = rows.find((row) => row.event === 'BeforeRotation');
    const afterRow = rows.find((row) => row.event === 'AfterRotation');
    assert.ok(beforeRow && afterRow, JSON.stringify(rows));
    assert.match(beforeRow.properties.distinct_id, PSEUDONYM_RE);
    assert.match(afterRow.properties.distinct_id, PSEUDONYM_RE);
    assert.notEqual(beforeRow.properties.distinct_id, afterRow.properties.distinct_id,
      'the same distinct_id has a new subject after the rotation');

    // The log records which key made each subject.
    const dumped = await dumpedEvents(server);
    const beforeDump = dumped.find((event) => event.name === 'BeforeRotation');
    const afterDump = dumped.find((event) => event.name === 'AfterRotation');
    assert.ok(beforeDump && afterDump, JSON.stringify(dumped));
    assert.equal(beforeDump.keyVersion, 1);
    assert.equal(afterDump.keyVersion, 2);
    assert.equal(`psn_${beforeDump.subject}`, beforeRow.properties.distinct_id);
    assert.equal(`psn_${afterDump.subject}`, afterRow.properties.distinct_id);

    // The export's distinct_id filter pseudonymises with the current key.
    const filtered = await server.exportEvents({ distinctId: 'user-rot' });
    assert.deepEqual(filtered.map((row) => row.event), ['AfterRotation']);
  });

  it('destroys every kept key with --destroy-old', async () => {
    const id = server.project.id;
    const { stdout } = await runCli(['project', 'rotate-key', 'rotating', '--destroy-old', '--yes',
      '--data', server.dataDir, '--keys', server.keysDir]);
    assert.match(stdout, /version 2 -> 3/);
    const left = (await fsp.readdir(server.keysDir)).filter((name) => name.startsWith(`project-${id}.`));
    assert.deepEqual(left, [`project-${id}.key`]);

    await server.reload();
    await importOne(server, 'AfterDestroy', 'user-rot');
    const dumped = await dumpedEvents(server);
    assert.equal(dumped.find((event) => event.name === 'AfterDestroy').keyVersion, 3);
  });
});
