// The HTTP face itself: pipelined requests are answered in order on one
// connection, keep-alive connections serve many requests, and a request in
// flight when SIGTERM arrives is answered and stored before the exit, as is
// a SIGTERM amid many busy keep-alive clients.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';

import { basicAuth, hex32, nowSeconds, sleep, startServer } from './harness.mjs';

// Writes `payload` on one connection and collects everything the server
// sends until it has seen `responses` complete responses or closes.
function exchange(port, payload, responses) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let buffer = Buffer.alloc(0);
    const parsed = [];
    const timer = setTimeout(() => socket.destroy(new Error('timed out')), 30000);
    const parse = () => {
      while (true) {
        const headEnd = buffer.indexOf('\r\n\r\n');
        if (headEnd < 0) return;
        const head = buffer.subarray(0, headEnd).toString('latin1');
        const length = Number((head.match(/content-length: (\d+)/i) || [0, 0])[1]);
        if (buffer.length < headEnd + 4 + length) return;
        parsed.push({
          status: Number(head.match(/^HTTP\/1\.1 (\d{3})/)[1]),
          body: buffer.subarray(headEnd + 4, headEnd + 4 + length).toString('utf8'),
        });
        buffer = buffer.subarray(headEnd + 4 + length);
        if (parsed.length === responses) {
          clearTimeout(timer);
          socket.end();
          resolve(parsed);
        }
      }
    };
    socket.on('data', (data) => {
      buffer = Buffer.concat([buffer, data]);
      parse();
    });
    socket.on('error', reject);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(parsed);
    });
    socket.write(payload);
  });
}

function trackRequest(port, token, name) {
  const data = encodeURIComponent(JSON.stringify({
    event: name, properties: { token, distinct_id: 'user-http', $insert_id: hex32() },
  }));
  const body = `data=${data}`;
  return `POST /track HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    `Content-Type: application/x-www-form-urlencoded\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

describe('HTTP/1.1 connections', () => {
  let server;
  before(async () => {
    server = await startServer({ projectName: 'http-project' });
  });
  after(async () => {
    if (server) {
      await server.cleanup();
    }
  });

  it('answers pipelined requests in order on one connection', async () => {
    const port = server.port;
    const health = `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;
    const missing = `GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;
    const payload = health + trackRequest(port, server.project.token, 'Pipelined 1') + missing +
      trackRequest(port, server.project.token, 'Pipelined 2') + health;
    const responses = await exchange(port, payload, 5);
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 404, 200, 200]);
    assert.deepEqual(responses.map((r) => r.body), ['ok\n', '1', responses[2].body, '1', 'ok\n']);
    const names = (await server.exportEvents()).map((row) => row.event);
    assert.ok(names.includes('Pipelined 1') && names.includes('Pipelined 2'), names.join(','));
  });

  it('serves many requests on one keep-alive connection', async () => {
    let payload = '';
    for (let request = 0; request < 50; request += 1) {
      payload += trackRequest(server.port, server.project.token, 'Kept alive');
    }
    const responses = await exchange(server.port, payload, 50);
    assert.equal(responses.length, 50);
    assert.ok(responses.every((r) => r.status === 200 && r.body === '1'));
  });

  it('finishes a request in flight at SIGTERM, then exits 0', async () => {
    const events = [];
    for (let index = 0; index < 2000; index += 1) {
      events.push({ event: 'In flight', properties: {
        distinct_id: `user-${index}`, time: nowSeconds(), $insert_id: hex32(), pad: 'x'.repeat(200) } });
    }
    const body = JSON.stringify(events);
    const head = `POST /import HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n` +
      `Authorization: ${basicAuth(`${server.project.secret}:`)}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
    const socket = net.connect(server.port, '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    const answer = new Promise((resolve) => {
      const chunks = [];
      socket.on('data', (data) => chunks.push(data));
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      socket.on('error', () => {});
    });
    // Half the body, the signal, then the rest: the request is in flight.
    const half = Math.floor(body.length / 2);
    socket.write(head + body.slice(0, half));
    await sleep(100);
    const exited = new Promise((resolve) => server.child.once('exit', (code, signal) => resolve({ code, signal })));
    process.kill(server.pid, 'SIGTERM');
    await sleep(100);
    socket.write(body.slice(half));
    const text = await answer;
    assert.match(text, /^HTTP\/1\.1 200 /, text.slice(0, 200));
    assert.deepEqual(await exited, { code: 0, signal: null });
    await server.start();
    const stored = (await server.exportEvents({ event: ['In flight'] })).length;
    assert.equal(stored, 2000);
  });

  // The shutdown closes idle sessions; one whose last request has just been
  // answered may lose its last other reference then, and its destructor
  // must not need the lock the shutdown holds (a self-deadlock seen once in
  // bench/audit.sh). A race this test has not hit on purpose (nine rounds
  // against the binary that had it passed): it checks the shutdown itself,
  // with many keep-alive clients busy until the signal, ending in exit 0.
  it('exits 0 at SIGTERM while many keep-alive clients are busy or idle', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
    for (let round = 0; round < 3; round += 1) {
      const exited = new Promise((resolve) => server.child.once('exit', (code, signal) => resolve({ code, signal })));
      let stop = false;
      const clients = Array.from({ length: 64 }, async () => {
        while (!stop) {
          await new Promise((resolve) => {
            const req = http.get({ host: '127.0.0.1', port: server.port, path: '/healthz', agent }, (res) => {
              res.resume();
              res.on('end', resolve);
            });
            req.on('error', resolve);
          });
        }
      });
      await sleep(300);
      process.kill(server.pid, 'SIGTERM');
      const timeout = sleep(15000).then(() => 'still running 15 s after SIGTERM');
      const outcome = await Promise.race([exited, timeout]);
      stop = true;
      await Promise.all(clients);
      assert.deepEqual(outcome, { code: 0, signal: null });
      await server.start();
    }
    agent.destroy();
  });
});
