// Runs the official mixpanel SDK against an HTTPS minpanel in its own process.
// The SDK builds its own https.Agent and has no option for a CA, and node reads
// NODE_EXTRA_CA_CERTS only at start-up, so the parent test starts this script
// with NODE_EXTRA_CA_CERTS pointing at the throwaway CA.
//
// Input (JSON on stdin): {host, token, auth: {secret} | {user, secret, projectId},
// steps: [{op: 'track'|'import'|'import_batch'|'track_batch', ...}]}.
// Output (last stdout line): {results: [{op, error}]}, where error is the
// SDK's error message or null.

import { requireMixpanel, quietLogger } from './harness.mjs';

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function errorText(error) {
  if (!error) {
    return null;
  }
  if (Array.isArray(error)) {
    return error.map((item) => item.message || String(item)).join('; ');
  }
  return error.message || String(error);
}

function call(fn) {
  return new Promise((resolve) => {
    try {
      fn((error) => resolve(errorText(error)));
    } catch (error) {
      resolve(`threw: ${error.message}`);
    }
  });
}

// Dates travel as {$date: ms} through JSON.
function revive(properties) {
  const out = { ...properties };
  if (out.time && typeof out.time === 'object' && out.time.$date !== undefined) {
    out.time = new Date(out.time.$date);
  }
  return out;
}

const input = JSON.parse(await readStdin());
const Mixpanel = requireMixpanel();
const config = { protocol: 'https', host: input.host, logger: quietLogger, verbose: Boolean(input.verbose) };
if (input.auth.user !== undefined) {
  config.credentials = new Mixpanel.ServiceAccountCredentials(input.auth.user, input.auth.secret,
    String(input.auth.projectId));
} else {
  config.secret = input.auth.secret;
}
const client = Mixpanel.init(input.token, config);
const results = [];
for (const step of input.steps) {
  let error;
  if (step.op === 'track') {
    error = await call((cb) => client.track(step.event, revive(step.properties), cb));
  } else if (step.op === 'import') {
    error = await call((cb) => client.import(step.event, step.time, revive(step.properties), cb));
  } else if (step.op === 'import_batch') {
    error = await call((cb) => client.import_batch(step.events, { max_concurrent_requests: 4 }, cb));
  } else if (step.op === 'track_batch') {
    error = await call((cb) => client.track_batch(step.events, cb));
  } else {
    error = `unknown op ${step.op}`;
  }
  results.push({ op: step.op, error });
}
process.stdout.write(`${JSON.stringify({ results })}\n`);
// The SDK's keep-alive agent would hold the process open.
process.exit(0);
