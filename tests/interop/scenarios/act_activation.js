// act_activation.js: activation end to end, run by
// tests/integration/test_activation.sh against the real cdp-activation,
// cdp-consent, cdp-profile and cdp-identity on one Redis, with
// tests/tools/webhook-receiver.js as the webhook endpoints. Segment
// changes are fed by XADDing entries to segmentation's change stream in
// the documented shape (docs/activation.md), which is the contract.
//
// ACT_PHASE selects what runs:
//   main           the scenarios below (node --test);
//   crash-prepare  20 changes to a slow endpoint, returns once some are in
//                  flight (the wrapper then SIGKILLs and restarts activation);
//   crash-verify   every one of them arrives (distinct idempotency keys).
//
// Environment: CDP_TEST_ACTIVATION_ADDR, CDP_TEST_CONSENT_ADDR,
// CDP_TEST_PROFILE_ADDR, CDP_TEST_REDIS_PORT, ACT_FAST_PORT, ACT_SLOW_PORT,
// ACT_DOWN_PORT, ACT_SECRET, ACT_RECEIVER, CDP_TEST_RUN_ID.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const { execFileSync, spawn } = require('child_process');
const cdp = require('../lib/cdp');
const protoLoader = require('@grpc/proto-loader');
const { grpc } = cdp;

const PROTO_DIR = path.resolve(__dirname, '..', '..', '..', 'proto');
const def = protoLoader.loadSync(['cdp/v1/activation.proto', 'cdp/v1/consent.proto'], {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR],
});
const v1 = grpc.loadPackageDefinition(def).cdp.v1;
const OPTS = { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 1000,
  'grpc.use_local_subchannel_pool': 1 };

const CHANGES = 'cdp:seg:{changes}:log';
const WAIT_MS = 15000;
const run = cdp.runId().replace(/[^A-Za-z0-9]/g, '');
const SECRET = cdp.env('ACT_SECRET');
const FAST = Number(cdp.env('ACT_FAST_PORT'));
const SLOW = Number(cdp.env('ACT_SLOW_PORT'));
const DOWN = Number(cdp.env('ACT_DOWN_PORT'));
const CRASH_N = 20;

const act = new v1.Activation(cdp.env('CDP_TEST_ACTIVATION_ADDR'), grpc.credentials.createInsecure(), OPTS);
const cns = new v1.Consent(cdp.env('CDP_TEST_CONSENT_ADDR'), grpc.credentials.createInsecure(), OPTS);
const prf = cdp.client('profile', cdp.env('CDP_TEST_PROFILE_ADDR'));

// ---------------------------------------------------------------- helpers

function redis(...args) {
  return execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', cdp.env('CDP_TEST_REDIS_PORT'), ...args])
    .toString().trim();
}

const counters = {};
// change(seg, master, kind, ev, n): XADDs one change entry; returns its cid.
function change(seg, master, kind = 'entered', ev = ['Order Completed'], n) {
  const key = `${seg}:${master}`;
  counters[key] = n || (counters[key] || 0) + 1;
  const cid = `${seg}:${master}:${counters[key]}`;
  redis('XADD', CHANGES, '*', 'cid', cid, 'seg', seg, 'm', master, 'kind', kind,
    'at', String(Date.now()), 'ev', JSON.stringify(ev), 'mid', `msg-${cid}`);
  return cid;
}

async function control(port, body) {
  const r = await fetch(`http://127.0.0.1:${port}/_control`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(r.status, 200);
}

async function requests(port, p) {
  const r = await fetch(`http://127.0.0.1:${port}/_requests`);
  const all = await r.json();
  return all.filter((q) => q.path === p);
}

const keyOf = (q) => q.headers['idempotency-key'];

async function profile(master, name) {
  const ident = cdp.ident('email', `${master}@example.test`);
  const ev = cdp.identifyEvent({ id: `id-${master}`, ids: [ident], traits: { name, plan: 'gold' },
    tsMs: Date.now() });
  await cdp.call(prf, 'ApplyEvents', { events: [{ event: ev, master_id: master, identifiers: [ident] }] });
}

async function grant(master) {
  await cdp.call(cns, 'SetConsent', {
    master_id: master, actor: 'test',
    entries: [{ purpose: 'marketing', channel: '*', status: 'CONSENT_STATUS_GRANTED', source: 'api' }],
  });
}

async function person(tag, consent = true) {
  const master = `m-${run}-${tag}`;
  await profile(master, `Person ${tag}`);
  if (consent) await grant(master);
  return master;
}

async function webhook(tag, port, seg, extra = {}) {
  return cdp.call(act, 'CreateDestination', {
    destination: {
      id: `${tag}-${run}`, name: tag, type: 'DESTINATION_TYPE_WEBHOOK',
      url: `http://127.0.0.1:${port}/${tag}`, secret: SECRET,
      triggers: [{ on: 'CHANGE_KIND_ENTERED', segment_id: seg }],
      timeout_ms: 5000, ...extra,
    },
  });
}

function deliveryOf(destId, cid) {
  // the id is derived (docs/activation.md); the API finds it by listing
  return cdp.call(act, 'ListDeliveries', { destination_id: destId, page_size: 1000 })
    .then((r) => r.deliveries.find((d) => d.change_id === cid));
}

async function waitState(destId, cid, state, ms = WAIT_MS) {
  return cdp.waitFor(`${cid} ${state}`, async () => {
    const d = await deliveryOf(destId, cid);
    return d && d.state === state ? d : null;
  }, ms);
}

function startReceiver(port, log) {
  const p = spawn('node', [cdp.env('ACT_RECEIVER'), '--port', String(port), '--secret', SECRET,
    '--log', log, '--max-seconds', '120'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    p.stdout.on('data', (d) => { if (String(d).includes('listening')) resolve(p); });
    p.on('exit', (code) => reject(new Error(`receiver exited ${code}`)));
  });
}

// ---------------------------------------------------------------- main

async function main() {
  test.after(() => [act, cns, prf].forEach((c) => c.close()));

  test('validation names the field', async () => {
    const bad = await cdp.callStatus(act, 'CreateDestination', {
      destination: { type: 'DESTINATION_TYPE_WEBHOOK', url: 'ftp://x', secret: SECRET,
        triggers: [{ on: 'CHANGE_KIND_ENTERED', segment_id: 's' }] } });
    assert.equal(bad.code, grpc.status.INVALID_ARGUMENT);
    assert.match(bad.details, /destination\.url/);
    const short = await cdp.callStatus(act, 'CreateDestination', {
      destination: { type: 'DESTINATION_TYPE_WEBHOOK', url: 'http://x.test', secret: 'short',
        triggers: [{ on: 'CHANGE_KIND_ENTERED', segment_id: 's' }] } });
    assert.match(short.details, /destination\.secret/);
    const d = await webhook('val', FAST, `sval-${run}`);
    assert.equal(d.secret, '');
    assert.equal(d.secret_set, true);
    assert.equal(d.purpose, 'marketing');
    assert.equal(d.max_attempts, 8);
    const got = await cdp.call(act, 'GetDestination', { id: d.id });
    assert.equal(got.secret, '');
    const dup = await cdp.callStatus(act, 'CreateDestination', { destination: { ...got, secret: SECRET } });
    assert.equal(dup.code, grpc.status.ALREADY_EXISTS);
    assert.equal((await cdp.call(act, 'DeleteDestination', { id: d.id })).deleted, true);
    assert.equal((await cdp.callStatus(act, 'GetDestination', { id: d.id })).code, grpc.status.NOT_FOUND);
  });

  test('a trigger makes exactly one signed POST with the profile', async () => {
    const seg = `s1-${run}`;
    const d = await webhook('h1', FAST, seg);
    const filtered = await webhook('h1f', FAST, seg,
      { triggers: [{ on: 'CHANGE_KIND_ENTERED', segment_id: seg, event_names: ['Signed Up'] }] });
    const m = await person('p1');
    await cdp.sleep(400); // the catalogue reload (CDP_ACTIVATION_RELOAD_MS 200)
    const cid = change(seg, m);
    change(seg, m, 'entered', ['Order Completed'], 1); // the same change read again
    change(seg, m, 'exited');                           // no trigger for exits
    const [q] = await cdp.waitFor('the POST', async () => {
      const r = await requests(FAST, '/h1');
      return r.length ? r : null;
    }, WAIT_MS);
    assert.equal(q.method, 'POST');
    assert.equal(q.signature_valid, true);
    assert.equal(q.headers['content-type'], 'application/json');
    const body = JSON.parse(q.body);
    assert.equal(keyOf(q), body.deliveryId);
    assert.equal(q.headers['x-cdp-delivery-id'], body.deliveryId);
    assert.equal(q.headers['x-cdp-attempt'], '1');
    assert.equal(body.kind, 'CHANGE_KIND_ENTERED');
    assert.equal(body.changeId, cid);
    assert.equal(body.masterId, m);
    assert.deepEqual(body.eventNames, ['Order Completed']);
    assert.equal(body.profile.masterId, m);
    assert.equal(body.profile.traits.name, 'Person p1');
    assert.equal(body.profile.timeline, undefined);
    const dl = await waitState(d.id, cid, 'DELIVERY_STATE_DELIVERED');
    assert.equal(dl.attempts, 1);
    const got = await cdp.call(act, 'GetDelivery', { delivery_id: body.deliveryId });
    assert.equal(got.state, 'DELIVERY_STATE_DELIVERED');
    // a later change arrives after the duplicate was read: still one POST for cid
    const cid2 = change(seg, m);
    await waitState(d.id, cid2, 'DELIVERY_STATE_DELIVERED');
    const all = await requests(FAST, '/h1');
    assert.equal(all.filter((r) => JSON.parse(r.body).changeId === cid).length, 1);
    assert.equal(all.length, 2);
    // the event filter: nothing for the filtered destination
    assert.equal((await requests(FAST, '/h1f')).length, 0);
    assert.equal((await cdp.call(act, 'ListDeliveries', { destination_id: filtered.id })).deliveries.length, 0);
  });

  test('500, 500, 200: one delivery, one key, three attempts', async () => {
    const seg = `s2-${run}`;
    const d = await webhook('h2', FAST, seg);
    const m = await person('p2');
    await cdp.sleep(400);
    await control(FAST, { respond: [500, 500, 200] });
    const cid = change(seg, m);
    const dl = await waitState(d.id, cid, 'DELIVERY_STATE_DELIVERED');
    assert.equal(dl.attempts, 3);
    const reqs = await requests(FAST, '/h2');
    assert.equal(reqs.length, 3);
    assert.equal(new Set(reqs.map(keyOf)).size, 1);
    assert.deepEqual(reqs.map((q) => q.headers['x-cdp-attempt']), ['1', '2', '3']);
    assert.ok(reqs.every((q) => q.signature_valid === true));
  });

  test('receiver down, then up: everything delivered', async () => {
    const seg = `s3-${run}`;
    const d = await webhook('h3', DOWN, seg, { max_attempts: 100 });
    const m = await person('p3');
    await cdp.sleep(400);
    const cids = [change(seg, m), change(seg, m), change(seg, m)];
    await cdp.waitFor('failed attempts', async () => {
      const r = await cdp.call(act, 'ListDeliveries', { destination_id: d.id });
      return r.deliveries.length === 3 && r.deliveries.every((x) => x.attempts >= 2 &&
        x.state !== 'DELIVERY_STATE_DELIVERED' && x.last_error !== '');
    }, WAIT_MS);
    const rcv = await startReceiver(DOWN, `${process.env.ACT_TMP || '/tmp'}/down-receiver.jsonl`);
    try {
      for (const cid of cids) await waitState(d.id, cid, 'DELIVERY_STATE_DELIVERED');
      const reqs = await requests(DOWN, '/h3');
      assert.equal(new Set(reqs.map(keyOf)).size, 3);
    } finally {
      rcv.kill('SIGTERM');
    }
  });

  test('a slow destination does not delay a fast one', async () => {
    const segSlow = `s4slow-${run}`, segFast = `s4fast-${run}`;
    const slow = await webhook('h4slow', SLOW, segSlow, { max_in_flight: 2 });
    const fast = await webhook('h4fast', FAST, segFast);
    const m = await person('p4');
    await cdp.sleep(400);
    await control(SLOW, { delay_ms: 3000 });
    const slowCids = [];
    for (let i = 0; i < 6; i++) slowCids.push(change(segSlow, m));
    await cdp.waitFor('the slow endpoint busy', async () => (await requests(SLOW, '/h4slow')).length >= 2, WAIT_MS);
    const t0 = Date.now();
    const cid = change(segFast, m);
    await cdp.waitFor('the fast delivery', async () => (await requests(FAST, '/h4fast')).length === 1, WAIT_MS, 20);
    const took = Date.now() - t0;
    assert.ok(took < 1500, `the fast destination took ${took} ms`);
    await waitState(fast.id, cid, 'DELIVERY_STATE_DELIVERED');
    const pendingSlow = (await cdp.call(act, 'ListDeliveries', { destination_id: slow.id })).deliveries
      .filter((x) => x.state !== 'DELIVERY_STATE_DELIVERED');
    assert.ok(pendingSlow.length >= 3, 'slow deliveries were still waiting');
    await control(SLOW, { delay_ms: 0 });
    for (const c of slowCids) await waitState(slow.id, c, 'DELIVERY_STATE_DELIVERED', 30000);
  });

  test('consent denied at send time: BLOCKED, audited, no POST; granted later: delivered', async () => {
    const seg = `s5-${run}`;
    const d = await webhook('h5', FAST, seg);
    const m = await person('p5', false);
    await cdp.sleep(400);
    const cid = change(seg, m);
    const dl = await waitState(d.id, cid, 'DELIVERY_STATE_BLOCKED');
    assert.notEqual(dl.consent_reason, '');
    assert.match(dl.consent_reason, /gdpr|marketing|deny/);
    assert.equal((await requests(FAST, '/h5')).length, 0);
    const audit = await cdp.call(cns, 'GetAudit', { master_id: m });
    const denial = audit.records.find((r) => r.action === 'denied_at_send');
    assert.ok(denial, `no denied_at_send in ${JSON.stringify(audit.records)}`);
    assert.equal(denial.actor, `activation/${d.id}`);
    assert.equal(denial.context, dl.delivery_id);
    await grant(m);
    const cid2 = change(seg, m);
    await waitState(d.id, cid2, 'DELIVERY_STATE_DELIVERED');
    assert.equal((await requests(FAST, '/h5')).length, 1);
  });

  test('attempts exhausted: dead letter with the last error; replay delivers', async () => {
    const seg = `s6-${run}`;
    const d = await webhook('h6', FAST, seg, { max_attempts: 3 });
    const m = await person('p6');
    await cdp.sleep(400);
    await control(FAST, { respond: [503, 503, 503] });
    const cid = change(seg, m);
    const dead = await waitState(d.id, cid, 'DELIVERY_STATE_DEAD');
    assert.equal(dead.attempts, 3);
    assert.match(dead.last_error, /HTTP 503/);
    const dl = await cdp.call(act, 'ListDeadLetters', { destination_id: d.id });
    assert.deepEqual(dl.deliveries.map((x) => x.change_id), [cid]);
    // a permanent refusal is dead at once
    await control(FAST, { respond: [404] });
    const cid404 = change(seg, m);
    const dead404 = await waitState(d.id, cid404, 'DELIVERY_STATE_DEAD');
    assert.equal(dead404.attempts, 1);
    assert.match(dead404.last_error, /HTTP 404/);
    const r = await cdp.call(act, 'ReplayDeadLetters', { destination_id: d.id, delivery_ids: [dead.delivery_id] });
    assert.equal(r.replayed, 1);
    const ok = await waitState(d.id, cid, 'DELIVERY_STATE_DELIVERED');
    assert.equal(ok.attempts, 1);
    const left = await cdp.call(act, 'ListDeadLetters', { destination_id: d.id });
    assert.deepEqual(left.deliveries.map((x) => x.change_id), [cid404]);
  });

  test('gateway: subscribe, receive with the profile, ack; unacked is redelivered', async () => {
    const seg = `s7-${run}`;
    const channel = `whatsapp`;
    const d = await cdp.call(act, 'CreateDestination', {
      destination: { id: `gw-${run}`, type: 'DESTINATION_TYPE_GATEWAY', channel,
        triggers: [{ on: 'CHANGE_KIND_ENTERED', segment_id: seg }], timeout_ms: 1000 },
    });
    const m = await person('p7');
    await cdp.sleep(400);
    const stream = act.Subscribe({ channel, subscriber: 'test-gw' });
    const got = [];
    let ended = false;
    stream.on('data', (msg) => got.push(msg));
    stream.on('error', () => { ended = true; });
    try {
      const cid = change(seg, m);
      const first = await cdp.waitFor('the activation on the stream', async () => got.find((x) => x.change_id === cid), WAIT_MS);
      assert.equal(first.destination_id, d.id);
      assert.equal(first.profile.master_id, m);
      assert.equal(cdp.fromStruct(first.profile.traits).name, 'Person p7');
      assert.equal(first.attempt, 1);
      const ack = await cdp.call(act, 'Ack', { delivery_ids: [first.delivery_id] });
      assert.equal(ack.acked, 1);
      await waitState(d.id, cid, 'DELIVERY_STATE_DELIVERED');
      const again = await cdp.call(act, 'Ack', { delivery_ids: [first.delivery_id] });
      assert.deepEqual(again.unknown, [first.delivery_id]);

      const cid2 = change(seg, m);
      const re = await cdp.waitFor('the redelivery', async () => {
        const all = got.filter((x) => x.change_id === cid2);
        return all.length >= 2 ? all : null;
      }, WAIT_MS);
      assert.equal(re[0].delivery_id, re[1].delivery_id);
      assert.equal(re[1].attempt, 2);
      assert.equal((await cdp.call(act, 'Ack', { delivery_ids: [re[1].delivery_id] })).acked, 1);
      const dl = await waitState(d.id, cid2, 'DELIVERY_STATE_DELIVERED');
      assert.equal(dl.attempts, 2);
    } finally {
      stream.cancel();
    }
    assert.equal(ended || true, true);
  });
}

// ---------------------------------------------------------------- crash

const CRASH_DEST = `hc-${run}`;
const CRASH_SEG = `sc-${run}`;

async function crashPrepare() {
  await webhook('hc', SLOW, CRASH_SEG, { max_in_flight: 4, timeout_ms: 3000 });
  const m = await person('pc');
  await cdp.sleep(400);
  await control(SLOW, { delay_ms: 1500, clear: true });
  for (let i = 0; i < CRASH_N; i++) change(CRASH_SEG, m, 'entered', [], i + 1);
  await cdp.waitFor('deliveries in flight', async () => (await requests(SLOW, '/hc')).length >= 4, WAIT_MS);
}

async function crashVerify() {
  await control(SLOW, { delay_ms: 0 });
  await cdp.waitFor(`${CRASH_N} distinct keys`, async () => {
    const keys = new Set((await requests(SLOW, '/hc')).map(keyOf));
    return keys.size === CRASH_N;
  }, 40000, 200);
  await cdp.waitFor('all delivered', async () => {
    const r = await cdp.call(act, 'ListDeliveries', { destination_id: CRASH_DEST, page_size: 100 });
    return r.deliveries.length === CRASH_N && r.deliveries.every((x) => x.state === 'DELIVERY_STATE_DELIVERED');
  }, 20000, 200);
  const reqs = await requests(SLOW, '/hc');
  assert.ok(reqs.every((q) => q.signature_valid === true));
  console.log(`crash: ${reqs.length} requests for ${CRASH_N} deliveries`);
}

const phase = process.env.ACT_PHASE || 'main';
if (phase === 'main') {
  main();
} else {
  (phase === 'crash-prepare' ? crashPrepare() : crashVerify())
    .then(() => { [act, cns, prf].forEach((c) => c.close()); })
    .catch((err) => { console.error(err); process.exit(1); });
}
