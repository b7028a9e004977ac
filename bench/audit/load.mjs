// N segmentation queries from CLIENTS clients at once against a running
// server (bench/audit_syscalls.sh), after 50 to warm it; prints the
// queries per second. A query that is not answered 200 stops the run.
//
//   node bench/audit/load.mjs PORT SECRET FROM_DATE TO_DATE N CLIENTS
import http from 'node:http';

const [port, secret, from, to, n, clients] = process.argv.slice(2);
const auth = `Basic ${Buffer.from(`${secret}:`).toString('base64')}`;
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
const body = JSON.stringify({ kind: 'segmentation', from, to, events: ['page_view'] });
function query() {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/api/query', agent,
      headers: { Authorization: auth } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}
for (let warm = 0; warm < 50; warm += 1) await query();
const started = Date.now();
await Promise.all(Array.from({ length: Number(clients) }, async () => {
  for (let idx = 0; idx < Number(n) / Number(clients); idx += 1) await query();
}));
console.log(`${(Number(n) / ((Date.now() - started) / 1000)).toFixed(0)} queries/s`);
agent.destroy();
