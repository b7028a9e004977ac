// Writes request-body templates for bench/loadgen.cc and bench/ingest/ingest.lua.
//
// Each template is one request body split into segments, one per line; the
// driver joins the segments with a per-request 12-hex token, which ends every
// event's $insert_id. So every event sent is unique (nothing is dropped as a
// duplicate). loadgen joins them once and overwrites the tokens in place
// before each request (`--token-encoding hex|base64`); the wrk script does
// one table.concat per request.
//
//   /track : form body `data=<base64 of a JSON array of 50 events>`, the base64
//            unencoded (literal '+' and '/'), as the mixpanel node SDK sends it.
//            Every segment but the last is padded with JSON whitespace to a
//            multiple of 3 bytes, so base64(segment) + base64(token) + ... is
//            exactly base64 of the whole body.
//   /import: a JSON array of 2000 events (Basic auth is set by the Lua script).
//   segment: Segment's /v1/batch as @segment/analytics-node sends it, 15 track
//            messages (its flushAt) in {"batch":[...],"writeKey","sentAt"};
//            the token ends each messageId, the client IP is context.ip.
//   posthog: PostHog's /batch/ as posthog-node sends it, 20 capture events
//            (its flushAt) in {"api_key","batch":[...],"sent_at"}; the token
//            is the last group of each event's uuid, the client IP is $ip.
//
// Usage: node make_templates.mjs ROUTE OUT_DIR COUNT TOKEN NONCE_HEX8

import fs from 'node:fs';
import path from 'node:path';

const [route, outDir, countText, token, nonce] = process.argv.slice(2);
if (!['track', 'import', 'segment', 'posthog'].includes(route) || !outDir || !countText || !token || !/^[0-9a-f]{8}$/.test(nonce || '')) {
  process.stderr.write('usage: make_templates.mjs track|import|segment|posthog OUT_DIR COUNT TOKEN NONCE_HEX8\n');
  process.exit(2);
}
const count = Number(countText);
const batch = { track: 50, import: 2000, segment: 15, posthog: 20 }[route];
const TOKEN_BYTES = 12;

const EVENTS = ['Viewed Page', 'Clicked Button', 'Signed Up', 'Started Trial', 'Invited Teammate', 'Exported Report'];
const BROWSERS = [['Chrome', 124], ['Firefox', 126], ['Safari', 17], ['Edge', 124]];
const OSES = [['Mac OS X', 'Mac'], ['Windows', 'Desktop'], ['Linux', 'Desktop'], ['iOS', 'iPhone'], ['Android', 'Pixel']];
const PAGES = ['/projects/42/reports', '/settings/billing', '/onboarding/step-2', '/dashboards/7', '/docs/getting-started'];
const PLANS = ['free', 'pro', 'team', 'enterprise'];
const FEATURES = ['funnels', 'retention', 'segmentation', 'cohorts', 'export'];
// Public /16 networks in several countries; each user gets one stable address
// in one of them, sent as the `ip` property, as server-side Mixpanel SDKs do,
// so the policy's IP → location lookup is part of what is measured.
const NETWORKS = ['81.2', '91.198', '185.60', '151.101', '212.58', '78.46', '2.16', '41.203',
  '200.160', '103.21', '5.9', '46.4', '62.210', '89.187', '177.71', '49.12', '36.66', '190.93'];
function userIp(user) {
  const host = Math.imul(user + 1, 2654435761) >>> 16;
  return `${NETWORKS[user % NETWORKS.length]}.${(host >>> 8) & 0xff}.${(host & 0xff) || 1}`;
}

// A deterministic generator, so the bodies are the same for every run.
let seed = 0x2545f491;
function random() {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
}
const pick = (list) => list[Math.floor(random() * list.length)];
const hex = (value, width) => value.toString(16).padStart(width, '0');

// The part of one event before its $insert_id's token, and the part after.
function eventParts(templateIdx, eventIdx, baseTime) {
  const [browser, browserVersion] = pick(BROWSERS);
  const [os, device] = pick(OSES);
  const page = pick(PAGES);
  const props = {};
  if (route === 'track') {
    props.token = token;
  }
  const user = Math.floor(random() * 50000);
  props.distinct_id = `user-${hex(user, 6)}`;
  props.ip = userIp(user);
  const before = {
    ...props,
    $browser: browser,
    $browser_version: browserVersion,
    $os: os,
    $device: device,
    $current_url: `https://app.example.test${page}?tab=${pick(FEATURES)}`,
    $referrer: 'https://www.example.org/',
    $screen_width: pick([1280, 1440, 1920, 390]),
    $screen_height: pick([720, 900, 1080, 844]),
  };
  const after = {
    time: baseTime - Math.floor(random() * 6 * 3600),
    plan: pick(PLANS),
    seats: 1 + Math.floor(random() * 40),
    trial: random() < 0.2,
    feature: pick(FEATURES),
    mp_lib: 'web',
    $lib_version: '2.83.0',
  };
  const name = JSON.stringify(pick(EVENTS));
  if (route === 'segment') {
    return segmentParts(name, before, after, templateIdx, eventIdx);
  }
  if (route === 'posthog') {
    return posthogParts(name, before, after, templateIdx, eventIdx);
  }
  const head = `{"event":${name},"properties":${JSON.stringify(before).slice(0, -1)},`;
  const fixed = `${nonce}${hex(templateIdx, 4)}${hex(eventIdx, 4)}0000`; // 20 hex; the token adds 12
  const insertKey = `"$insert_id":"${fixed}`;
  const tail = `"${JSON.stringify(after).replace(/^\{/, ',')}}`;
  return { head, insertKey, tail };
}

// The same event as an analytics-node track message: the Mixpanel context
// properties become Segment's context (ip, page, library), the rest its
// properties; the token ends the messageId.
function segmentParts(name, before, after, templateIdx, eventIdx) {
  const { distinct_id: userId, ip, $current_url: url, $referrer: referrer, ...browserProperties } = before;
  const { time, mp_lib: lib, $lib_version: libVersion, ...rest } = after;
  const message = {
    type: 'track', event: JSON.parse(name), userId,
    properties: { ...browserProperties, ...rest },
    context: { ip, page: { url, referrer }, library: { name: '@segment/analytics-node', version: '3.1.0' } },
    integrations: {}, timestamp: new Date(time * 1000).toISOString(),
  };
  const fixed = `node-next-${nonce}${hex(templateIdx, 4)}${hex(eventIdx, 4)}0000`;
  return {
    head: JSON.stringify(message).slice(0, -1) + ',',
    insertKey: `"messageId":"${fixed}`,
    tail: '","_metadata":{"nodeVersion":"v20.20.2","jsRuntime":"node"}}',
  };
}

// The same event as a posthog-node capture: distinct_id and the ISO
// timestamp at the top, the client IP as $ip, the library's own properties;
// the token is the uuid's last group (12 hex digits).
function posthogParts(name, before, after, templateIdx, eventIdx) {
  const { distinct_id: distinctId, ip, ...browserProperties } = before;
  const { time, mp_lib: _lib, $lib_version: _libVersion, ...rest } = after;
  const properties = {
    ...browserProperties, ...rest, $ip: ip, $lib: 'posthog-node', $lib_version: '5.70.0', $geoip_disable: true,
  };
  const head = `{"distinct_id":${JSON.stringify(distinctId)},"event":${name},"properties":${JSON.stringify(properties)},` +
    `"type":"capture","library":"posthog-node","library_version":"5.70.0","timestamp":"${new Date(time * 1000).toISOString()}",`;
  const fixed = `${nonce}-${hex(templateIdx, 4)}-${hex(eventIdx, 4)}-8000-`;
  return { head, insertKey: `"uuid":"${fixed}`, tail: '"}' };
}

// Pads `text` (which ends with `,"$insert_id":"<hex>`) to a multiple of 3
// bytes by putting spaces before the "$insert_id" key.
function padBeforeInsertKey(prefix, insertKey) {
  const length = Buffer.byteLength(prefix) + Buffer.byteLength(insertKey);
  const pad = (3 - (length % 3)) % 3;
  return prefix + ' '.repeat(pad) + insertKey;
}

fs.mkdirSync(outDir, { recursive: true });
const baseTime = Math.floor(Date.now() / 1000) - 600;
let totalEventBytes = 0;
for (let templateIdx = 0; templateIdx < count; templateIdx += 1) {
  // segments[k] ends right before the k-th token.
  const segments = [];
  let carry = { segment: '{"batch":[', posthog: `{"api_key":${JSON.stringify(token)},"batch":[` }[route] ?? '[';
  for (let eventIdx = 0; eventIdx < batch; eventIdx += 1) {
    const { head, insertKey, tail } = eventParts(templateIdx, eventIdx, baseTime);
    totalEventBytes += head.length + insertKey.length + TOKEN_BYTES + tail.length;
    const prefix = carry + head;
    segments.push(route === 'track' ? padBeforeInsertKey(prefix, insertKey) : prefix + insertKey);
    carry = tail + (eventIdx + 1 < batch ? ',' : ']');
  }
  if (route === 'posthog') {
    carry += `,"sent_at":"${new Date(baseTime * 1000 + 600000).toISOString()}"}`;
  }
  if (route === 'segment') {
    carry += `,"writeKey":${JSON.stringify(token)},"sentAt":"${new Date(baseTime * 1000 + 600000).toISOString()}"}`;
  }
  segments.push(carry);
  let lines;
  if (route === 'track') {
    for (let segmentIdx = 0; segmentIdx + 1 < segments.length; segmentIdx += 1) {
      if (Buffer.byteLength(segments[segmentIdx]) % 3 !== 0) {
        throw new Error('segment not 3-byte aligned');
      }
    }
    lines = segments.map((segment) => Buffer.from(segment).toString('base64'));
  } else {
    lines = segments;
  }
  fs.writeFileSync(path.join(outDir, `${route}_${hex(templateIdx, 3)}.txt`), `${lines.join('\n')}\n`);
}
process.stdout.write(`${Math.round(totalEventBytes / (count * batch))}\n`);
