// e2e_activation.js: the whole path over the six running services, as a
// platform team would drive it with generated stubs, plus an independent
// HTTP receiver (tests/tools/webhook-receiver.js) and a gateway client.
//
//   ingested event -> identity -> profile -> consent (consent events)
//   -> segmentation (enter) -> activation -> consent check -> signed POST
//                                                         -> gateway stream
//
// Checks: a person who consented gets exactly one signed webhook POST (valid
// HMAC, idempotency key, profile context) and one gateway message that is
// acked; a person without consent (GDPR default) and a person whose email
// is suppressed get nothing, their deliveries are BLOCKED with the reason,
// and the consent audit holds the send-time denial; with the segmentation
// clock moved 31 days on, the time-based segment's members exit without any
// new event (seen on WatchSegment).
//
// Environment: CDP_TEST_{INGESTION,SEGMENTATION,CONSENT,ACTIVATION,PROFILE}_ADDR,
// CDP_TEST_RECEIVER_URL, CDP_TEST_RECEIVER_SECRET, CDP_TEST_CLOCK_FILE.
'use strict';

const assert = require('assert');
const fs = require('fs');
const cdp = require('../lib/cdp');

const DAY_MS = 86400000;
const WAIT_MS = 20000;
const run = cdp.runId().replace(/[^A-Za-z0-9]/g, '');

const ing = cdp.client('ingestion', cdp.env('CDP_TEST_INGESTION_ADDR'));
const seg = cdp.client('segmentation', cdp.env('CDP_TEST_SEGMENTATION_ADDR'));
const cns = cdp.client('consent', cdp.env('CDP_TEST_CONSENT_ADDR'));
const act = cdp.client('activation', cdp.env('CDP_TEST_ACTIVATION_ADDR'));
const prf = cdp.client('profile', cdp.env('CDP_TEST_PROFILE_ADDR'));
const receiverUrl = cdp.env('CDP_TEST_RECEIVER_URL');
const secret = cdp.env('CDP_TEST_RECEIVER_SECRET');
const clockFile = cdp.env('CDP_TEST_CLOCK_FILE');

function log(...a) {
  console.log('[e2e]', ...a);
}

async function receiverRequests() {
  const r = await fetch(`${receiverUrl.replace(/\/hook$/, '')}/_requests`);
  return r.json();
}

async function ingest(events) {
  const r = await cdp.call(ing, 'Ingest', { events });
  for (const x of r.results) assert.strictEqual(x.status, 'EVENT_STATUS_ACCEPTED', JSON.stringify(x));
}

async function masterOf(email) {
  const p = await cdp.waitFor(`profile of ${email}`, () => cdp.getProfile(prf, cdp.ident('email', email)), WAIT_MS);
  return p.master_id;
}

async function deliveriesOf(destId) {
  const r = await cdp.call(act, 'ListDeliveries', { destination_id: destId, page_size: 100 });
  return r.deliveries;
}

async function main() {
  const segId = `buyers-${run}`;
  const emails = { ok: `ok-${run}@example.com`, nocon: `nocon-${run}@example.com`, supp: `supp-${run}@example.com` };

  // A segment with a window: bought in the last 30 days.
  const s = await cdp.call(seg, 'CreateSegment', {
    id: segId,
    name: 'Buyers, last 30 days',
    rule: 'count("Order Completed", 30d) >= 1',
  });
  assert.strictEqual(s.time_based, true);
  const bad = await cdp.callStatus(seg, 'CreateSegment', { name: 'x', rule: 'count("Order Completed", 30d) >=' });
  assert.strictEqual(bad.code, cdp.status.INVALID_ARGUMENT);
  assert.match(bad.details, /segment\.rule: line 1, column \d+/);

  // Watch it from the start of its history.
  const changes = [];
  const watch = seg.WatchSegment({ segment_id: segId, after: '0' });
  watch.on('data', (c) => changes.push(c));
  watch.on('error', () => {});

  // A signed webhook and a WhatsApp gateway, both on entering the segment.
  const hook = await cdp.call(act, 'CreateDestination', {
    destination: {
      name: 'crm hook',
      type: 'DESTINATION_TYPE_WEBHOOK',
      url: receiverUrl,
      secret,
      channel: 'email',
      purpose: 'marketing',
      triggers: [{ on: 'CHANGE_KIND_ENTERED', segment_id: segId, event_names: ['Order Completed'] }],
      timeout_ms: 2000,
    },
  });
  assert.strictEqual(hook.secret, '');
  assert.strictEqual(hook.secret_set, true);
  const gw = await cdp.call(act, 'CreateDestination', {
    destination: {
      name: 'whatsapp gateway',
      type: 'DESTINATION_TYPE_GATEWAY',
      channel: 'whatsapp',
      purpose: 'marketing',
      triggers: [{ on: 'CHANGE_KIND_ENTERED', segment_id: segId }],
      timeout_ms: 5000,
    },
  });
  const gatewayMsgs = [];
  const sub = act.Subscribe({ channel: 'whatsapp', subscriber: `gw-${run}` });
  sub.on('data', (m) => {
    gatewayMsgs.push(m);
    cdp.call(act, 'Ack', { delivery_ids: [m.delivery_id] }).catch(() => {});
  });
  sub.on('error', () => {});

  // The suppressed person is on the list before anything happens.
  await cdp.call(cns, 'Suppress', {
    identifier: cdp.ident('email', emails.supp.toUpperCase()),
    reason: 'global_unsubscribe',
    actor: 'e2e',
  });

  // Consent arrives as events through ingestion, then the orders.
  const now = Date.now();
  const consent = (who, n) =>
    cdp.trackEvent({
      id: `${run}-consent-${n}`,
      event: 'Consent Updated',
      ids: [cdp.ident('email', who)],
      properties: {
        consents: [
          { purpose: 'marketing', channel: 'email', status: 'granted', legal_basis: 'consent', jurisdiction: 'gdpr' },
          { purpose: 'marketing', channel: 'whatsapp', status: 'granted', legal_basis: 'consent' },
        ],
      },
      tsMs: now - 1000,
    });
  await ingest([consent(emails.ok, 1), consent(emails.supp, 2)]);
  const order = (who, n) =>
    cdp.trackEvent({
      id: `${run}-order-${n}`,
      event: 'Order Completed',
      ids: [cdp.ident('email', who)],
      properties: { revenue: 42 },
      channel: 'web',
      tsMs: now,
    });
  await ingest([order(emails.ok, 1), order(emails.nocon, 2), order(emails.supp, 3)]);
  const m = { ok: await masterOf(emails.ok), nocon: await masterOf(emails.nocon), supp: await masterOf(emails.supp) };
  log('masters', JSON.stringify(m));

  // Everyone enters the segment.
  await cdp.waitFor('three members', async () => {
    const r = await cdp.call(seg, 'ListMembers', { segment_id: segId, page_size: 10 });
    return r.members.length === 3;
  }, WAIT_MS);

  // The consenting person: one signed POST with the profile context.
  const posts = await cdp.waitFor('a webhook POST', async () => {
    const r = (await receiverRequests()).filter((q) => q.path === '/hook');
    return r.length >= 1 ? r : null;
  }, WAIT_MS);
  const body = JSON.parse(posts[0].body);
  assert.strictEqual(posts[0].signature_valid, true, 'signature must verify');
  assert.strictEqual(body.masterId, m.ok);
  assert.strictEqual(body.segmentId, segId);
  assert.strictEqual(posts[0].headers['idempotency-key'], body.deliveryId);
  assert.ok(body.profile && body.profile.masterId === m.ok, 'profile context');

  // The other two: blocked with the reason, never sent.
  const blocked = await cdp.waitFor('two blocked deliveries', async () => {
    const d = (await deliveriesOf(hook.id)).filter((x) => x.state === 'DELIVERY_STATE_BLOCKED');
    return d.length === 2 ? d : null;
  }, WAIT_MS);
  const reasons = Object.fromEntries(blocked.map((d) => [d.master_id, d.consent_reason]));
  assert.match(reasons[m.supp], /suppress/i);
  assert.match(reasons[m.nocon], /gdpr/i);
  const audit = await cdp.call(cns, 'GetAudit', { master_id: m.nocon });
  assert.ok(audit.records.some((r) => r.action === 'denied_at_send'), 'send-time denial audited');
  const delivered = (await deliveriesOf(hook.id)).filter((x) => x.state === 'DELIVERY_STATE_DELIVERED');
  assert.strictEqual(delivered.length, 1);
  assert.strictEqual((await receiverRequests()).filter((q) => q.path === '/hook').length, 1, 'exactly one POST');

  // The gateway got the consenting person only, and its ack counted.
  await cdp.waitFor('the gateway message', () => gatewayMsgs.length >= 1, WAIT_MS);
  assert.strictEqual(gatewayMsgs[0].master_id, m.ok);
  await cdp.waitFor('the gateway delivery acked', async () => {
    const d = await deliveriesOf(gw.id);
    return d.some((x) => x.master_id === m.ok && x.state === 'DELIVERY_STATE_DELIVERED');
  }, WAIT_MS);

  // Day 31: no new event, and the members leave on time.
  fs.writeFileSync(clockFile, String(31 * DAY_MS));
  await cdp.waitFor('three exits on the watch stream', () =>
    changes.filter((c) => c.kind === 'CHANGE_KIND_EXITED').length === 3, WAIT_MS);
  const r = await cdp.call(seg, 'ListMembers', { segment_id: segId, page_size: 10 });
  assert.strictEqual(r.members.length, 0);
  const enters = changes.filter((c) => c.kind === 'CHANGE_KIND_ENTERED');
  assert.strictEqual(enters.length, 3);
  assert.ok(enters.every((c) => c.event_names.includes('Order Completed')));
  fs.writeFileSync(clockFile, '0');

  watch.cancel();
  sub.cancel();
  log('PASSED');
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error('[e2e] FAILED:', err && err.stack ? err.stack : err);
    process.exit(1);
  },
);
