// redis_outage.js: what the services say while their Redis is away, run by
// tests/integration/test_pipeline.sh as `node --test` in three phases
// (CDP_TEST_PHASE) around stopping and restarting a private redis-server:
//
//   before: one person with 3 events is applied (the data that must survive);
//   down:   every service's health goes NOT_SERVING (Check and Watch), Track
//           is not acknowledged (UNAVAILABLE), GetProfile is UNAVAILABLE;
//   up:     every service is SERVING again, the person still has 3 events,
//           and a new event is acknowledged and applied (the pipeline runs).
//
// Environment: CDP_TEST_PHASE, CDP_TEST_INGESTION_ADDR, CDP_TEST_IDENTITY_ADDR,
// CDP_TEST_IDENTITY2_ADDR, CDP_TEST_PROFILE_ADDR, CDP_TEST_RUN_ID.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const cdp = require('../lib/cdp');

const STATUS_WAIT_MS = 20000;
const APPLY_WAIT_MS = 30000;
const WATCH_WAIT_MS = 20000;

const run = cdp.runId();
const person = cdp.ident('user_id', `outage-${run}`);
const phase = cdp.env('CDP_TEST_PHASE');
const addrs = ['CDP_TEST_INGESTION_ADDR', 'CDP_TEST_IDENTITY_ADDR', 'CDP_TEST_IDENTITY2_ADDR',
  'CDP_TEST_PROFILE_ADDR'].map(cdp.env);

let ing, prf;
test.before(() => {
  ing = cdp.client('ingestion', cdp.env('CDP_TEST_INGESTION_ADDR'));
  prf = cdp.client('profile', cdp.env('CDP_TEST_PROFILE_ADDR'));
});
test.after(() => [ing, prf].forEach((c) => c.close()));

const event = (n) => cdp.trackEvent({ id: `outage-${run}-${n}`, event: 'Outage Probe', ids: [person] });

function totalIs(n) {
  return cdp.waitFor(`the outage person to have ${n} events`, async () => {
    const p = await cdp.getProfile(prf, person);
    return p && Number(p.total_events) === n ? p : null;
  }, APPLY_WAIT_MS);
}

// watchUntil(addr, want): opens a Watch and resolves once it reports `want`
// (the first message or a later change).
function watchUntil(addr, want) {
  const h = cdp.healthClient(addr);
  return new Promise((resolve, reject) => {
    const seen = [];
    const stream = h.Watch({ service: '' });
    const done = (err) => {
      clearTimeout(timer);
      stream.cancel();
      h.close();
      if (err) reject(err); else resolve(seen);
    };
    const timer = setTimeout(() => done(new Error(`${addr}: Watch saw ${seen} but not ${want}`)), WATCH_WAIT_MS);
    stream.on('data', (m) => {
      seen.push(m.status);
      if (m.status === want) done(null);
    });
    stream.on('error', (err) => done(err.code === cdp.status.CANCELLED ? null : err));
  });
}

function allReport(want) {
  return cdp.waitFor(`every service to report ${want}`, async () => {
    const s = await Promise.all(addrs.map((a) => cdp.healthStatus(a)));
    return s.every((x) => x === want);
  }, STATUS_WAIT_MS);
}

if (phase === 'before') {
  test('before: a person with 3 applied events', async () => {
    const r = await cdp.call(ing, 'Ingest', { events: [1, 2, 3].map(event) });
    assert.equal(r.accepted, 3);
    await totalIs(3);
  });
}

if (phase === 'down') {
  test('down: health goes NOT_SERVING everywhere', async () => {
    await Promise.all(addrs.map((a) => watchUntil(a, 'NOT_SERVING')));
    await allReport('NOT_SERVING');
  });

  test('down: an event is not acknowledged, a profile read is UNAVAILABLE', async () => {
    const t = await cdp.callStatus(ing, 'Track', event('during-outage'), 10000);
    assert.notEqual(t.code, cdp.status.OK, `Track must not be acknowledged without Redis: ${JSON.stringify(t.reply)}`);
    assert.equal(t.code, cdp.status.UNAVAILABLE, `Track: ${t.code} ${t.details}`);
    const g = await cdp.callStatus(prf, 'GetProfile', { identifier: person }, 10000);
    assert.equal(g.code, cdp.status.UNAVAILABLE, `GetProfile: ${g.code} ${g.details}`);
  });
}

if (phase === 'up') {
  test('up: health is SERVING again, the data survived, the pipeline runs', async () => {
    await Promise.all(addrs.map((a) => watchUntil(a, 'SERVING')));
    await allReport('SERVING');
    const before = await cdp.getProfile(prf, person);
    assert.ok(before, 'the profile survived the restart');
    assert.equal(Number(before.total_events), 3);
    const r = await cdp.call(ing, 'Track', event(4));
    assert.equal(r.status, 'EVENT_STATUS_ACCEPTED');
    await totalIs(4);
  });
}
