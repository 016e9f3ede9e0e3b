// health.test.js: grpc.health.v1 as Kubernetes probes and standard tools use
// it, on each running service: Check and Watch for the whole server ("") and
// for the service's own name, and the standard answers for an unknown name.
//
// Needs CDP_TEST_INGESTION_ADDR, CDP_TEST_IDENTITY_ADDR, CDP_TEST_PROFILE_ADDR
// (tests/integration/test_interop.sh starts the services and sets them).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const cdp = require('./lib/cdp');

const WATCH_WAIT_MS = 5000;

const targets = [
  { kind: 'ingestion', addr: () => cdp.env('CDP_TEST_INGESTION_ADDR') },
  { kind: 'identity', addr: () => cdp.env('CDP_TEST_IDENTITY_ADDR') },
  { kind: 'profile', addr: () => cdp.env('CDP_TEST_PROFILE_ADDR') },
];

// firstWatchMessage(addr, service) -> { status, code } where status is the
// first message's status and code the stream's final status after the
// client cancels it.
function firstWatchMessage(addr, service) {
  const h = cdp.healthClient(addr);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.cancel();
      h.close();
      reject(new Error(`no Watch message from ${addr} within ${WATCH_WAIT_MS} ms`));
    }, WATCH_WAIT_MS);
    let first = null;
    const stream = h.Watch({ service });
    stream.on('data', (m) => {
      if (first !== null) return;
      first = m.status;
      stream.cancel();
    });
    stream.on('error', (err) => {
      clearTimeout(timer);
      h.close();
      if (first === null) reject(err);
      else resolve({ status: first, code: err.code });
    });
    stream.on('end', () => {
      clearTimeout(timer);
      h.close();
      if (first === null) reject(new Error('Watch ended without a message'));
      else resolve({ status: first, code: cdp.status.OK });
    });
  });
}

for (const t of targets) {
  const healthName = cdp.SERVICES[t.kind].health;

  test(`${t.kind}: Check "" and "${healthName}" answer SERVING`, async () => {
    const h = cdp.healthClient(t.addr());
    try {
      const whole = await cdp.call(h, 'Check', { service: '' });
      assert.equal(whole.status, 'SERVING');
      const own = await cdp.call(h, 'Check', { service: healthName });
      assert.equal(own.status, 'SERVING');
    } finally {
      h.close();
    }
  });

  test(`${t.kind}: Check of an unknown service name is NOT_FOUND`, async () => {
    const h = cdp.healthClient(t.addr());
    try {
      const r = await cdp.callStatus(h, 'Check', { service: 'no.such.Service' });
      assert.equal(r.code, cdp.status.NOT_FOUND, `got code ${r.code} ${r.details}`);
    } finally {
      h.close();
    }
  });

  test(`${t.kind}: Watch sends the current status (SERVING) at once`, async () => {
    const r = await firstWatchMessage(t.addr(), healthName);
    assert.equal(r.status, 'SERVING');
    assert.equal(r.code, cdp.status.CANCELLED, 'the stream ends CANCELLED after the client cancels');
    const whole = await firstWatchMessage(t.addr(), '');
    assert.equal(whole.status, 'SERVING');
  });

  test(`${t.kind}: Watch of an unknown service name sends SERVICE_UNKNOWN`, async () => {
    const r = await firstWatchMessage(t.addr(), 'no.such.Service');
    assert.equal(r.status, 'SERVICE_UNKNOWN');
  });
}
