// Writes request-body templates for bench/loadgen.cc's Plausible route
// (POST /api/event): one event per request, as plausible-tracker 0.3.9 sends
// it (JSON as text/plain, short field names, props as a JSON string), for the
// site bench.example. Mostly page views, some custom events with props.
//
// Each template is a single segment (no token): Plausible sends no id and
// minpanel gives each event a random insert id, so nothing is dropped as a
// duplicate. Prints the mean body size in bytes.
//
// Usage: node make_plausible_templates.mjs OUT_DIR COUNT

import fs from 'node:fs';
import path from 'node:path';

const [outDir, countText] = process.argv.slice(2);
if (!outDir || !countText || !(Number(countText) > 0)) {
  process.stderr.write('usage: make_plausible_templates.mjs OUT_DIR COUNT\n');
  process.exit(2);
}
const count = Number(countText);
const SITE = 'bench.example';
const PAGES = ['/', '/pricing', '/docs/getting-started', '/blog/how-we-count', '/signup', '/features/funnels'];
const REFERRERS = [null, null, 'https://www.example.org/', 'https://news.example.com/item?id=1', 'https://search.example/?q=analytics'];
const EVENTS = ['Signup', 'Download', 'Outbound Link: Click', 'Purchase'];
const PLANS = ['free', 'pro', 'team'];

// A deterministic generator, so the bodies are the same for every run.
let seed = 0x1b873593;
function random() {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}
const pick = (list) => list[Math.floor(random() * list.length)];

fs.mkdirSync(outDir, { recursive: true });
let totalBytes = 0;
for (let templateIdx = 0; templateIdx < count; templateIdx += 1) {
  const custom = random() < 0.25;
  const body = {
    n: custom ? pick(EVENTS) : 'pageview',
    u: `https://${SITE}${pick(PAGES)}${random() < 0.3 ? '?utm_source=newsletter&utm_medium=email' : ''}`,
    d: SITE,
    r: pick(REFERRERS),
    w: pick([390, 768, 1280, 1440, 1920]),
    h: 0,
  };
  if (custom) {
    body.p = JSON.stringify({ plan: pick(PLANS), seats: 1 + Math.floor(random() * 40), trial: random() < 0.2 });
  }
  const text = JSON.stringify(body);
  totalBytes += Buffer.byteLength(text);
  fs.writeFileSync(path.join(outDir, `plausible_${templateIdx.toString(16).padStart(3, '0')}.txt`), `${text}\n`);
}
process.stdout.write(`${Math.round(totalBytes / count)}\n`);
