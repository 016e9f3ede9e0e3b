#!/usr/bin/env node
// webhook-receiver: a programmable HTTP endpoint for the activation tests.
// Built-in modules only (node 18+).
//
//   node webhook-receiver.js --port P [--secret S] [--log FILE] [--max-seconds N]
//
// Listens on 127.0.0.1:P and prints "listening P" on stdout when ready.
// Every request except the /_ paths below is recorded as one JSON object
// (method, path, headers, body, received_at ms, remote_port,
// signature_valid) and, with --log, appended to FILE as one line.
// signature_valid checks X-Cdp-Signature as services/activation/act_sign.h
// defines it (HMAC-SHA256 over "<t>." + body, tolerance 300 s): null without
// --secret, false when the header is missing, malformed, wrong or stale.
//
// Control API:
//   POST /_control {"respond": [500, 500, 200], "delay_ms": 0, "default": 200,
//                   "response_bytes": 0, "clear": false}
//     respond: statuses for the next requests, one each, then default;
//     delay_ms: wait this long before answering (every request until changed);
//     response_bytes: answer with a body of that many "x" (else a short JSON);
//     clear: forget the recorded requests. Omitted fields keep their values,
//     except respond, which is replaced (empty when omitted).
//   GET /_requests   the recorded requests as a JSON array
//   GET /_health     200
// Ends on SIGTERM/SIGINT, or after --max-seconds (default 600) as a safety net.
'use strict';

const http = require('http');
const crypto = require('crypto');
const fs = require('fs');

const TOLERANCE_S = 300;
const SIGNATURE_RE = /^t=(0|[1-9][0-9]{0,18}),v1=([0-9a-f]{64})$/;

function parseArgs(argv) {
  const opts = { port: 0, secret: null, log: null, maxSeconds: 600 };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${name}: missing value`);
    if (name === '--port') opts.port = Number(value);
    else if (name === '--secret') opts.secret = value;
    else if (name === '--log') opts.log = value;
    else if (name === '--max-seconds') opts.maxSeconds = Number(value);
    else throw new Error(`unknown option ${name}`);
  }
  if (!Number.isInteger(opts.port) || opts.port <= 0) throw new Error('--port: required');
  return opts;
}

// true, false, or null when there is no secret to check with.
function signatureValid(secret, header, body) {
  if (secret === null) return null;
  const m = SIGNATURE_RE.exec(header || '');
  if (!m) return false;
  const mac = crypto.createHmac('sha256', secret).update(`${m[1]}.`).update(body).digest();
  const given = Buffer.from(m[2], 'hex');
  const fresh = Math.abs(Date.now() / 1000 - Number(m[1])) <= TOLERANCE_S;
  return crypto.timingSafeEqual(mac, given) && fresh;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`webhook-receiver: ${err.message}\n` +
    'usage: node webhook-receiver.js --port P [--secret S] [--log FILE] [--max-seconds N]\n');
  process.exit(2);
}
const recorded = [];
const plan = { respond: [], delayMs: 0, default: 200, responseBytes: 0 };

function control(body) {
  const c = JSON.parse(body.toString('utf8') || '{}');
  plan.respond = Array.isArray(c.respond) ? c.respond.slice() : [];
  if (c.delay_ms !== undefined) plan.delayMs = Number(c.delay_ms);
  if (c.default !== undefined) plan.default = Number(c.default);
  if (c.response_bytes !== undefined) plan.responseBytes = Number(c.response_bytes);
  if (c.clear) recorded.length = 0;
}

function send(res, status, body, type = 'application/json') {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function record(req, body) {
  const entry = {
    method: req.method,
    path: req.url,
    headers: req.headers,
    body: body.toString('utf8'),
    received_at: Date.now(),
    remote_port: req.socket.remotePort,
    signature_valid: signatureValid(opts.secret, req.headers['x-cdp-signature'], body),
  };
  recorded.push(entry);
  if (opts.log) fs.appendFileSync(opts.log, JSON.stringify(entry) + '\n');
}

function answer(res) {
  const status = plan.respond.length ? plan.respond.shift() : plan.default;
  const body = plan.responseBytes > 0 ? 'x'.repeat(plan.responseBytes)
                                      : JSON.stringify({ status });
  const type = plan.responseBytes > 0 ? 'text/plain' : 'application/json';
  setTimeout(() => send(res, status, body, type), plan.delayMs);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const path = req.url.split('?')[0];
    try {
      if (req.method === 'POST' && path === '/_control') {
        control(body);
        send(res, 200, JSON.stringify({ ok: true }));
      } else if (req.method === 'GET' && path === '/_requests') {
        send(res, 200, JSON.stringify(recorded));
      } else if (req.method === 'GET' && path === '/_health') {
        send(res, 200, '{"ok":true}');
      } else {
        record(req, body);
        answer(res);
      }
    } catch (err) {
      send(res, 400, JSON.stringify({ error: String(err.message || err) }));
    }
  });
});

function stop() {
  process.exit(0); // open keep-alive sockets must not hold the test up
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
setTimeout(stop, Math.min(opts.maxSeconds * 1000, 2 ** 31 - 1)).unref();

server.keepAliveTimeout = 60000; // keep connections open for reuse tests
server.listen(opts.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${opts.port}\n`);
});
