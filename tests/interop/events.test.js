// events.test.js: the event path as an SDK user sees it, through grpc-js
// stubs generated at run time from proto/: Track and Ingest of mixed events
// (track with revenue, identify with traits, a WhatsApp message) for one
// person known by two identifiers in separate events, an event carrying both
// that merges them, and GetProfile by either identifier; per-event
// validation results, INVALID_ARGUMENT naming the field, NOT_FOUND, and
// duplicates that are neither appended nor counted twice.
//
// Needs CDP_TEST_INGESTION_ADDR and CDP_TEST_PROFILE_ADDR (set by
// tests/integration/test_interop.sh) and CDP_TEST_RUN_ID for unique ids.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const cdp = require('./lib/cdp');

const PIPELINE_WAIT_MS = 30000;
const HOUR_MS = 3600 * 1000;
const FUTURE_MS = 7 * 24 * HOUR_MS;   // beyond ingestion's 24 h allowance

const run = cdp.runId();
const digits = String(Math.abs(hash(run)) % 1e9).padStart(9, '0');
const email = `ada.${run}@example.com`;
const phone = `+447${digits}`;          // E.164, stored as given
const mid = (s) => `interop-${run}-${s}`;

let ing;
let prf;

function hash(s) {
  let h = 0;
  for (const ch of s) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
  return h;
}

test.before(() => {
  ing = cdp.client('ingestion', cdp.env('CDP_TEST_INGESTION_ADDR'));
  prf = cdp.client('profile', cdp.env('CDP_TEST_PROFILE_ADDR'));
});

test.after(() => {
  ing.close();
  prf.close();
});

// profileWith(identifier, total): waits until GetProfile by identifier shows
// `total` events, and returns the view.
function profileWith(identifier, total) {
  return cdp.waitFor(`profile of ${identifier.type} with ${total} events`, async () => {
    const p = await cdp.getProfile(prf, identifier);
    return p && Number(p.total_events) === total ? p : null;
  }, PIPELINE_WAIT_MS);
}

test('one person, two identifiers, mixed events, merged by a later event', async () => {
  const byEmail = cdp.ident('email', email);
  const byPhone = cdp.ident('phone', phone);
  const t0 = Date.now() - HOUR_MS;

  // 1. Track: identify by email with traits.
  const first = cdp.identifyEvent({
    id: mid('identify-email'), ids: [byEmail], traits: { name: 'Ada', plan: 'pro' }, tsMs: t0,
  });
  const r1 = await cdp.call(ing, 'Track', first);
  assert.equal(r1.status, 'EVENT_STATUS_ACCEPTED');
  assert.equal(r1.message_id, first.message_id);
  assert.ok(r1.received_at && Number(r1.received_at.seconds) > 0, 'received_at is set');
  const emailOnly = await profileWith(byEmail, 1);

  // 2. Ingest a batch: orders by email, identify + WhatsApp message by phone,
  //    and two invalid events that are rejected alone.
  const batch = [
    cdp.trackEvent({
      id: mid('order-1'), event: 'Order Completed', ids: [byEmail], channel: 'web',
      properties: { revenue: 19.5, currency: 'EUR', items: [{ sku: 'A1', qty: 2 }] }, tsMs: t0 + 1000,
    }),
    cdp.trackEvent({
      id: mid('order-2'), event: 'Order Completed', ids: [byEmail], channel: 'web',
      properties: { revenue: 5.25 }, tsMs: t0 + 2000,
    }),
    cdp.identifyEvent({ id: mid('identify-phone'), ids: [byPhone], traits: { city: 'Lisbon' }, tsMs: t0 + 3000 }),
    cdp.messageEvent({ id: mid('wa-1'), ids: [byPhone], channel: 'whatsapp', text: 'hello', tsMs: t0 + 4000 }),
    cdp.trackEvent({ id: mid('no-name'), event: '', ids: [byEmail] }),
    cdp.trackEvent({ id: '', event: 'Order Completed', ids: [byEmail] }),
  ];
  const r2 = await cdp.call(ing, 'Ingest', { events: batch });
  assert.equal(r2.results.length, batch.length, 'one result per event');
  assert.deepEqual(r2.results.map((r) => r.index), [0, 1, 2, 3, 4, 5]);
  assert.deepEqual(r2.results.slice(0, 4).map((r) => r.status), Array(4).fill('EVENT_STATUS_ACCEPTED'));
  assert.equal(r2.results[4].status, 'EVENT_STATUS_REJECTED');
  assert.equal(r2.results[4].field, 'events[4].event');
  assert.ok(r2.results[4].error.length > 0, 'a rejected event says why');
  assert.equal(r2.results[5].status, 'EVENT_STATUS_REJECTED');
  assert.equal(r2.results[5].field, 'events[5].message_id');
  assert.ok(r2.results[5].error.length > 0, 'a rejected event says why');
  assert.equal(r2.accepted, 4);
  assert.equal(r2.rejected, 2);
  assert.equal(r2.duplicates, 0);

  const emailSide = await profileWith(byEmail, 3);
  const phoneSide = await profileWith(byPhone, 2);
  assert.equal(emailSide.master_id, emailOnly.master_id);
  assert.notEqual(emailSide.master_id, phoneSide.master_id, 'two people until an event links them');

  // 3. Duplicates: the same message ids again are DUPLICATE, not appended.
  const again = await cdp.call(ing, 'Track', first);
  assert.equal(again.status, 'EVENT_STATUS_DUPLICATE');
  const r3 = await cdp.call(ing, 'Ingest', { events: batch.slice(0, 2) });
  assert.deepEqual(r3.results.map((r) => r.status), ['EVENT_STATUS_DUPLICATE', 'EVENT_STATUS_DUPLICATE']);
  assert.equal(r3.duplicates, 2);
  assert.equal(r3.accepted, 0);

  // 4. One event carrying both identifiers merges the two people.
  const link = cdp.trackEvent({
    id: mid('link'), event: 'Account Linked', ids: [byEmail, byPhone], channel: 'app', tsMs: t0 + 5000,
  });
  assert.equal((await cdp.call(ing, 'Track', link)).status, 'EVENT_STATUS_ACCEPTED');

  const merged = await profileWith(byEmail, 6);
  const viaPhone = await profileWith(byPhone, 6);
  assert.equal(merged.master_id, emailOnly.master_id, 'the survivor is the older master id');
  assert.equal(viaPhone.master_id, merged.master_id, 'both identifiers reach the same profile');
  assert.ok(merged.merged_ids.includes(phoneSide.master_id), 'the merged-away id is listed');

  assert.deepEqual(cdp.counts(merged), {
    identify: 2, 'Order Completed': 2, message: 1, 'Account Linked': 1,
  });
  assert.equal(merged.revenue, 24.75);
  const traits = cdp.fromStruct(merged.traits);
  assert.equal(traits.name, 'Ada');
  assert.equal(traits.plan, 'pro');
  assert.equal(traits.city, 'Lisbon');
  const channels = merged.channels.map((c) => c.channel).sort();
  assert.deepEqual(channels, ['app', 'web', 'whatsapp']);
  const wa = merged.channels.find((c) => c.channel === 'whatsapp');
  assert.equal(wa.last_event, 'message');
  const ids = merged.identifiers.map((i) => `${i.type}:${i.value}`);
  assert.ok(ids.includes(`email:${email}`), `identifiers ${ids}`);
  assert.ok(ids.includes(`phone:${phone}`), `identifiers ${ids}`);
  assert.equal(Number(merged.first_seen.seconds), Math.floor(t0 / 1000));
  const timelineIds = merged.timeline.map((e) => e.message_id);
  assert.ok(timelineIds.includes(link.message_id), 'the timeline holds the latest event');

  // The merged-away master id still leads to the survivor's profile.
  const viaLoser = await cdp.call(prf, 'GetProfile', { master_id: phoneSide.master_id });
  assert.equal(viaLoser.master_id, merged.master_id);
});

test('Track of an invalid event is INVALID_ARGUMENT naming the field', async () => {
  const ids = [cdp.ident('user_id', `bad-${run}`)];
  const cases = [
    [cdp.trackEvent({ id: '', event: 'Signed Up', ids }), 'message_id'],
    [cdp.trackEvent({ id: mid('bad-name'), event: '', ids }), 'event'],
    [cdp.trackEvent({ id: mid('bad-ts'), event: 'Signed Up', ids, tsMs: Date.now() + FUTURE_MS }), 'timestamp'],
    [{ message_id: mid('bad-type'), type: 'EVENT_TYPE_UNSPECIFIED', identifiers: ids }, 'type'],
    [cdp.trackEvent({ id: mid('bad-email'), event: 'Signed Up', ids: [cdp.ident('email', 'not-an-email')] }),
      'identifiers'],
    [cdp.trackEvent({ id: mid('no-ids'), event: 'Signed Up' }), 'identifiers'],
  ];
  for (const [ev, field] of cases) {
    const r = await cdp.callStatus(ing, 'Track', ev);
    assert.equal(r.code, cdp.status.INVALID_ARGUMENT, `${field}: got ${r.code} ${r.details}`);
    assert.match(r.details, new RegExp(`\\b${field}\\b`), `details name ${field}: "${r.details}"`);
  }
});

test('GetProfile of an unknown person is NOT_FOUND, of nothing INVALID_ARGUMENT', async () => {
  const r = await cdp.callStatus(prf, 'GetProfile', { identifier: cdp.ident('email', `nobody.${run}@example.com`) });
  assert.equal(r.code, cdp.status.NOT_FOUND, `got ${r.code} ${r.details}`);
  const m = await cdp.callStatus(prf, 'GetProfile', { master_id: `no-such-master-${run}` });
  assert.equal(m.code, cdp.status.NOT_FOUND, `got ${m.code} ${m.details}`);
  const e = await cdp.callStatus(prf, 'GetProfile', {});
  assert.equal(e.code, cdp.status.INVALID_ARGUMENT, `got ${e.code} ${e.details}`);
});

test('ListDeadLetters answers a page', async () => {
  const r = await cdp.call(ing, 'ListDeadLetters', { page_size: 10 });
  assert.ok(Array.isArray(r.dead_letters));
  assert.ok(r.dead_letters.length <= 10);
});
