// audience.test.js: segments, consent and destinations as a platform team
// sees them through grpc-js stubs generated at run time from proto/:
// create a segment (and the positioned error of a bad rule), watch it while
// an ingested event puts a person in it, resume the watch from a cursor,
// read memberships and members; set and check consent with the deciding
// rule; register a webhook destination (its secret never comes back) and
// read it again; and the errors a bad destination gets.
//
// Needs CDP_TEST_{INGESTION,SEGMENTATION,CONSENT,ACTIVATION}_ADDR (set by
// tests/integration/test_interop.sh) and CDP_TEST_RUN_ID for unique ids.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const cdp = require('./lib/cdp');

const WAIT_MS = 30000;
const run = cdp.runId().replace(/[^A-Za-z0-9]/g, '');
let ing;
let seg;
let cns;
let act;

test.before(() => {
  ing = cdp.client('ingestion', cdp.env('CDP_TEST_INGESTION_ADDR'));
  seg = cdp.client('segmentation', cdp.env('CDP_TEST_SEGMENTATION_ADDR'));
  cns = cdp.client('consent', cdp.env('CDP_TEST_CONSENT_ADDR'));
  act = cdp.client('activation', cdp.env('CDP_TEST_ACTIVATION_ADDR'));
});

test.after(() => {
  for (const c of [ing, seg, cns, act]) c.close();
});

// watch(segmentId, after) -> { changes, stream, ended }: collects the stream.
function watch(segmentId, after) {
  const changes = [];
  const stream = seg.WatchSegment({ segment_id: segmentId, after });
  stream.on('data', (c) => changes.push(c));
  stream.on('error', () => {});
  return { changes, stream };
}

test('a bad rule answers INVALID_ARGUMENT with its position', async () => {
  const r = await cdp.callStatus(seg, 'CreateSegment', { name: 'bad', rule: 'trait.plan = ' });
  assert.equal(r.code, cdp.status.INVALID_ARGUMENT);
  assert.match(r.details, /^segment\.rule: line 1, column 14: /);
  const v = await cdp.call(seg, 'ValidateRule', { rule: 'trait.plan = "pro" and count("Order Completed", 30d) >= 1' });
  assert.ok(v.reads.includes('trait:plan'));
  assert.ok(v.reads.includes('event:Order Completed'));
  assert.equal(v.time_based, true);
});

test('an ingested event puts a person in a segment; the watch sees it and resumes', async () => {
  const id = `vip-${run}`;
  const s = await cdp.call(seg, 'CreateSegment', {
    id,
    name: 'VIP',
    description: 'pro plan in Germany',
    rule: 'trait.plan = "pro" and trait.country in ["DE", "AT"]',
  });
  assert.equal(s.id, id);
  assert.equal((await cdp.call(seg, 'GetSegment', { id })).name, 'VIP');
  const dup = await cdp.callStatus(seg, 'CreateSegment', { id, name: 'again', rule: 'true' });
  assert.equal(dup.code, cdp.status.ALREADY_EXISTS);

  const w = watch(id, '');
  await cdp.sleep(300); // the stream is open before the event lands
  const email = `vip-${run}@example.com`;
  const r = await cdp.call(ing, 'Track', cdp.identifyEvent({
    id: `aud-${run}-1`, ids: [cdp.ident('email', email)], traits: { plan: 'pro', country: 'DE' },
  }));
  assert.equal(r.status, 'EVENT_STATUS_ACCEPTED');
  await cdp.waitFor('the enter on the watch', () => w.changes.length >= 1, WAIT_MS);
  const enter = w.changes[0];
  assert.equal(enter.kind, 'CHANGE_KIND_ENTERED');
  assert.equal(enter.segment_id, id);
  assert.ok(enter.cursor);
  w.stream.cancel();

  const ms = await cdp.call(seg, 'GetMemberships', { identifier: cdp.ident('email', email) });
  assert.equal(ms.master_id, enter.master_id);
  assert.ok(ms.memberships.some((x) => x.segment_id === id && x.member));
  const members = await cdp.call(seg, 'ListMembers', { segment_id: id, page_size: 10 });
  assert.deepEqual(members.members.map((x) => x.master_id), [enter.master_id]);

  // The plan changes: an exit, which a watch resuming after the enter gets.
  await cdp.call(ing, 'Track', cdp.identifyEvent({
    id: `aud-${run}-2`, ids: [cdp.ident('email', email)], traits: { plan: 'free' },
  }));
  const resumed = watch(id, enter.cursor);
  await cdp.waitFor('the exit after the cursor', () => resumed.changes.length >= 1, WAIT_MS);
  assert.equal(resumed.changes[0].kind, 'CHANGE_KIND_EXITED');
  assert.equal(resumed.changes[0].master_id, enter.master_id);
  resumed.stream.cancel();
  const est = await cdp.call(seg, 'EstimateSize', { segment_id: id });
  assert.equal(est.exact, true);
  assert.equal(Number(est.estimate), 0);
});

test('consent: set, check with the deciding rule, audit', async () => {
  const email = `cns-${run}@example.com`;
  await cdp.call(ing, 'Track', cdp.identifyEvent({ id: `aud-${run}-c1`, ids: [cdp.ident('email', email)] }));
  const who = cdp.ident('email', email);
  await cdp.waitFor('the profile to exist for consent', async () =>
    (await cdp.callStatus(cns, 'SetConsent', {
      identifier: who,
      actor: 'interop',
      jurisdiction: 'gdpr',
      entries: [{ purpose: 'marketing', channel: 'sms', status: 'CONSENT_STATUS_GRANTED', source: 'interop', legal_basis: 'consent' }],
    })).code === cdp.status.OK, WAIT_MS);
  const sms = await cdp.call(cns, 'CheckConsent', { identifier: who, purpose: 'marketing', channel: 'sms' });
  assert.equal(sms.allowed, true);
  assert.equal(sms.rule, 'DECISION_RULE_EXPLICIT_CHANNEL');
  const email1 = await cdp.call(cns, 'CheckConsent', { identifier: who, purpose: 'marketing', channel: 'email' });
  assert.equal(email1.allowed, false);
  assert.equal(email1.rule, 'DECISION_RULE_JURISDICTION_DEFAULT');
  const badPurpose = await cdp.callStatus(cns, 'CheckConsent', { identifier: who, purpose: 'telepathy', channel: 'sms' });
  assert.equal(badPurpose.code, cdp.status.INVALID_ARGUMENT);
  assert.match(badPurpose.details, /purpose/);
  const audit = await cdp.call(cns, 'GetAudit', { identifier: who });
  assert.ok(audit.records.some((r) => r.action === 'set' && r.after && r.after.status === 'CONSENT_STATUS_GRANTED'));
});

test('a webhook destination: registered, read back without its secret, bad ones refused', async () => {
  const d = await cdp.call(act, 'CreateDestination', {
    destination: {
      name: 'interop hook',
      type: 'DESTINATION_TYPE_WEBHOOK',
      url: 'http://127.0.0.1:9/hook',
      secret: 'interop-secret-0123456789',
      triggers: [{ on: 'CHANGE_KIND_ENTERED', segment_id: `vip-${run}` }],
    },
  });
  assert.ok(d.id);
  assert.equal(d.secret, '');
  assert.equal(d.secret_set, true);
  const got = await cdp.call(act, 'GetDestination', { id: d.id });
  assert.equal(got.url, 'http://127.0.0.1:9/hook');
  assert.equal(got.secret, '');
  const list = await cdp.call(act, 'ListDestinations', { page_size: 1000 });
  assert.ok(list.destinations.some((x) => x.id === d.id));
  const bad = await cdp.callStatus(act, 'CreateDestination', {
    destination: { name: 'x', type: 'DESTINATION_TYPE_WEBHOOK', url: 'ftp://x', secret: 'interop-secret-0123456789',
      triggers: [{ on: 'CHANGE_KIND_ENTERED', segment_id: 's' }] },
  });
  assert.equal(bad.code, cdp.status.INVALID_ARGUMENT);
  assert.match(bad.details, /destination\.url/);
  assert.equal((await cdp.call(act, 'DeleteDestination', { id: d.id })).deleted, true);
  assert.equal((await cdp.callStatus(act, 'GetDestination', { id: d.id })).code, cdp.status.NOT_FOUND);
});
