// `minpanel debug rewrite-segments` on a data folder written by an older
// binary (fixtures/store_format4.tar.gz: segment format 4, before granules;
// fixtures/README.md says how it was made): every segment is rewritten into
// the newest format, with its property and map chunks in granules as
// `minpanel debug dump` prints them, the old files gone, and every answer is
// the same before and after — the time-range and list exports of
// `minpanel export` byte for byte, the segmentation, funnel and retention
// answers of `minpanel query`; a second run rewrites nothing, and one with
// `--all` rewrites every segment again with the same answers.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import { REPO_ROOT, assertBinaryExists, makeTempDir, parseJsonLines, runCli } from './harness.mjs';

const execFileAsync = promisify(execFile);
const FIXTURE = path.join(REPO_ROOT, 'tests', 'integration', 'fixtures', 'store_format4.tar.gz');
const PROJECT = 'rewrite-it';
const OLD_FORMAT = 4;

const QUERIES = {
  segmentation: {
    kind: 'segmentation', from: '2026-10-01', to: '2026-10-02', unit: 'day',
    events: ['Viewed Page', 'Purchased'], measure: 'unique', breakdown: { properties: ['plan'] },
  },
  funnel: {
    kind: 'funnel', from: '2026-10-01', to: '2026-10-02',
    steps: ['Signed Up', 'Clicked', 'Purchased'], window: { value: 2, unit: 'day' },
  },
  retention: {
    kind: 'retention', from: '2026-10-01', to: '2026-10-02', birth: 'Signed Up', return: 'Purchased',
    unit: 'day', periods: 1, mode: 'on',
  },
};

describe('minpanel debug rewrite-segments', () => {
  let root;
  let dataDir;
  let keysDir;
  let segmentsDir;

  before(async () => {
    assertBinaryExists();
    root = await makeTempDir('minpanel-rewrite-');
    await execFileAsync('tar', ['-xzf', FIXTURE, '-C', root]);
    dataDir = path.join(root, 'data');
    keysDir = path.join(root, 'keys');
    segmentsDir = path.join(dataDir, 'store', 'segments', '1');
  });

  after(async () => {
    if (root && !process.env.MINPANEL_KEEP_TMP) {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });

  const folderFlags = () => ['--data', dataDir, '--keys', keysDir];

  async function segments() {
    const files = (await fsp.readdir(segmentsDir)).filter((file) => file.endsWith('.seg')).sort();
    const result = [];
    for (const file of files) {
      const bytes = await fsp.readFile(path.join(segmentsDir, file));
      const { stdout } = await runCli(['debug', 'dump', path.join(segmentsDir, file)], { timeoutMs: 60000 });
      const version = Number(/^header: minpanel segment format (\d+)$/m.exec(stdout)?.[1]);
      const rows = Number(/^segment: project 1, (\d+) rows/m.exec(stdout)?.[1]);
      const granules = stdout.split('\n').filter((line) => /^ +granule \d+: rows \d+ \.\. \d+, /.test(line));
      result.push({ file, sha256: createHash('sha256').update(bytes).digest('hex'), version, rows, granules });
    }
    return result;
  }

  // Everything a reader can ask of the folder: both exports as printed, and
  // the three queries' answers without their timing statistics.
  async function answers() {
    const ids = path.join(root, 'ids.txt');
    await fsp.writeFile(ids, 'user-3\nuser-17\nuser-42\nuser-58\n');
    const range = await runCli(['export', '--project', PROJECT, '--from', '2026-10-01', '--to', '2026-10-02',
      '--no-watermark', ...folderFlags()], { timeoutMs: 60000 });
    const list = await runCli(['export', '--project', PROJECT, '--from', '2026-10-01', '--to', '2026-10-02',
      '--distinct-ids', ids, ...folderFlags()], { timeoutMs: 60000 });
    const queries = {};
    for (const [name, query] of Object.entries(QUERIES)) {
      const file = path.join(root, `${name}.json`);
      await fsp.writeFile(file, JSON.stringify(query));
      const { stdout } = await runCli(['query', file, '--project', PROJECT, ...folderFlags()], { timeoutMs: 60000 });
      const { stats, ...answer } = JSON.parse(stdout);
      queries[name] = answer;
    }
    return { range: range.stdout, list: list.stdout, queries };
  }

  it('rewrites every older segment into the newest format, in granules, with the same answers', async () => {
    const old = await segments();
    assert.equal(old.length, 2, JSON.stringify(old));
    for (const segment of old) {
      assert.equal(segment.version, OLD_FORMAT, segment.file);
      assert.deepEqual(segment.granules, [], segment.file);
    }
    const answersBefore = await answers();
    // The fixture's 1,815 events, and enough of them in each answer that an
    // equal answer after means something.
    assert.equal(parseJsonLines(answersBefore.range).length, 1815);
    assert.equal(old.reduce((sum, segment) => sum + segment.rows, 0), 1815);
    const listed = parseJsonLines(answersBefore.list);
    assert.ok(listed.length > 50, answersBefore.list.slice(0, 500));
    assert.equal(new Set(listed.map((row) => row.properties.distinct_id)).size, 4);
    assert.ok(JSON.stringify(answersBefore.queries.funnel).includes('60'), JSON.stringify(answersBefore.queries));

    const rewrite = await runCli(['debug', 'rewrite-segments', ...folderFlags()], { timeoutMs: 120000 });
    assert.match(rewrite.stderr, /every segment is in the newest format/);

    const rewritten = await segments();
    assert.equal(rewritten.length, old.length, JSON.stringify(rewritten));
    for (const segment of rewritten) {
      assert.ok(segment.version > OLD_FORMAT, `${segment.file}: format ${segment.version}`);
      assert.ok(!old.some((before) => before.file === segment.file), `${segment.file} was kept`);
    }
    assert.deepEqual(rewritten.map((segment) => segment.rows), old.map((segment) => segment.rows));
    // The first day's block of about 1,600 rows is cut into granules at
    // about 1,024 rows (the second day's 300-odd rows are one, stored whole).
    const firstDay = rewritten.find((segment) => segment.file.startsWith('2026-10-01'));
    assert.ok(firstDay.granules.some((line) => /granule 1: rows 10\d\d \.\. /.test(line)),
      firstDay.granules.join('\n'));
    const secondDay = rewritten.find((segment) => segment.file.startsWith('2026-10-02'));
    assert.deepEqual(secondDay.granules, []);

    const answersAfter = await answers();
    assert.equal(answersAfter.range, answersBefore.range);
    assert.equal(answersAfter.list, answersBefore.list);
    assert.deepEqual(answersAfter.queries, answersBefore.queries);

    // Nothing is older any more: a second run leaves every file as it was.
    await runCli(['debug', 'rewrite-segments', ...folderFlags()], { timeoutMs: 120000 });
    assert.deepEqual(await segments(), rewritten);

    // --all rewrites every segment, the newest format's too (by the
    // writer's current rules: the same ones here, so the same granules),
    // each once, under new names, with the same rows and answers.
    const all = await runCli(['debug', 'rewrite-segments', '--all', ...folderFlags()], { timeoutMs: 120000 });
    assert.match(all.stderr, /every segment is rewritten in the newest format/);
    const again = await segments();
    assert.equal(again.length, rewritten.length, JSON.stringify(again));
    for (const segment of again) {
      assert.equal(segment.version, rewritten[0].version, segment.file);
      assert.ok(!rewritten.some((before) => before.file === segment.file), `${segment.file} was kept`);
    }
    assert.deepEqual(again.map((segment) => segment.rows), rewritten.map((segment) => segment.rows));
    assert.deepEqual(again.map((segment) => segment.granules), rewritten.map((segment) => segment.granules));
    const answersAll = await answers();
    assert.equal(answersAll.range, answersBefore.range);
    assert.equal(answersAll.list, answersBefore.list);
    assert.deepEqual(answersAll.queries, answersBefore.queries);
  });
});
