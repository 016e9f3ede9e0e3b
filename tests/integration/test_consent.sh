#!/usr/bin/env bash
# test_consent.sh BUILD_DIR: the consent service (cdp-consent) against a
# private Redis with the real identity and profile services: a profile is
# created through identity's Resolve and profile's ApplyEvents, so its
# identifiers are in the shared profile store, then the scenario below (node,
# @grpc/grpc-js through tests/interop/lib/cdp.js) checks GetPolicy, set/get,
# the decision order and its rules, the defaults per jurisdiction (and the
# global default for a purpose without one), suppression by a normalized
# email and a channel-scoped phone, an identifier identity does not know,
# batch checks, the audit trail (set with before/after, a denial at send
# time with actor and context, suppress, paging), consent events (applied,
# replay counted as duplicate with no second audit record, non-consent
# events ignored, field errors, last write wins by event time and message
# id, jurisdiction from an event), merges (identity merges two and three
# profiles; the loser's consent folds into the survivor by stamp, audited
# as "merge", once however often the batch is replayed, and a chain ends
# on its last survivor whatever order the folds run in) and bad input.
# Before that, a malformed policy must stop the binary with exit 1 naming
# the variable and position.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

itest_init consent "${1:-}"
itest_require_node
itest_require_bins identity profile consent

# A bad policy is a startup error naming the variable and the position.
# (Leak checks off for these two runs: the shared main() does not free what
# it set up when a service's init fails, which is not what is tested here.)
out=$(env ASAN_OPTIONS=detect_leaks=0 CDP_REDIS_ADDR=127.0.0.1:1 CDP_GRPC_ADDR=127.0.0.1:0 CDP_METRICS_ADDR=127.0.0.1:0 \
  CDP_CONSENT_POLICY='gdpr:marketing=deny;ccpa:marketing=maybe' \
  timeout 10 "$ITEST_BUILD/cdp-consent" 2>&1)
rc=$?
[[ $rc -eq 1 ]] || itest_fail "bad policy: exit $rc, want 1"
[[ $out == *'CDP_CONSENT_POLICY: at position 36: expected allow or deny'* ]] ||
  itest_fail "bad policy message: $out"
out=$(env ASAN_OPTIONS=detect_leaks=0 CDP_REDIS_ADDR=127.0.0.1:1 CDP_GRPC_ADDR=127.0.0.1:0 \
  CDP_METRICS_ADDR=127.0.0.1:0 CDP_CONSENT_DEFAULT_JURISDICTION=lgpd timeout 10 "$ITEST_BUILD/cdp-consent" 2>&1)
rc=$?
[[ $rc -eq 1 && $out == *'CDP_CONSENT_DEFAULT_JURISDICTION: at position 1'* ]] ||
  itest_fail "unknown default jurisdiction: exit $rc: $out"
itest_log "bad configuration refused"

start_redis main
redis=$(redis_addr main)
# "profiling" has no default in either jurisdiction: the global default decides.
start_services "$redis" "identity profile consent" CDP_INGESTION_ADDR= \
  CDP_CONSENT_PURPOSES=marketing,analytics,personalization,profiling \
  'CDP_CONSENT_POLICY=gdpr:marketing=deny,analytics=deny,personalization=deny;ccpa:marketing=allow,analytics=allow,personalization=allow'
wait_healthy identity profile consent

export CDP_TEST_IDENTITY_ADDR=$IDN_ADDR CDP_TEST_PROFILE_ADDR=$PRF_ADDR CDP_TEST_CONSENT_ADDR=$CNS_ADDR
scenario=$ITEST_TMP/consent.test.js
cat >"$scenario" <<'EOF'
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const cdp = require(process.env.ITEST_INTEROP + '/lib/cdp.js');

const run = cdp.runId().replace(/[^a-z0-9]/gi, '').toLowerCase();
const idn = cdp.client('identity', process.env.CDP_TEST_IDENTITY_ADDR);
const prf = cdp.client('profile', process.env.CDP_TEST_PROFILE_ADDR);
const cns = cdp.client('consent', process.env.CDP_TEST_CONSENT_ADDR);
const OK = cdp.grpc.status.OK;
const INVALID = cdp.grpc.status.INVALID_ARGUMENT;
const NOT_FOUND = cdp.grpc.status.NOT_FOUND;
const T0 = Date.now() - 3600 * 1000;

// A person known to identity and profile: Resolve, then one identify event
// applied to the profile so that its identifiers are in the profile store.
let phones = 0;
async function person(name) {
  const ids = [cdp.ident('email', `${name}.${run}@Example.com`),
               cdp.ident('phone', `+1 415 555 ${1000 + ++phones}`)];
  const r = await cdp.call(idn, 'Resolve', { identifiers: ids, message_id: `res-${name}-${run}` });
  const ev = cdp.identifyEvent({ id: `idf-${name}-${run}`, ids, tsMs: T0 });
  const a = await cdp.call(prf, 'ApplyEvents',
    { events: [{ event: ev, master_id: r.master_id, identifiers: r.identifiers }] });
  assert.equal(a.applied, 1);
  return { master: r.master_id, email: `${name}.${run}@example.com`, ids: r.identifiers };
}

const check = (req) => cdp.call(cns, 'CheckConsent', { actor: 'test', ...req });
const entry = (purpose, channel, status, extra = {}) => ({ purpose, channel, status, ...extra });
async function audit(master, pageSize = 1000) {
  const all = [];
  let token = '';
  do {
    const r = await cdp.call(cns, 'GetAudit', { master_id: master, page_size: pageSize, page_token: token });
    assert.equal(r.master_id, master);
    all.push(...r.records);
    token = r.next_page_token;
  } while (token);
  return all;
}
function consentEvent(id, master, tsMs, properties) {
  return { master_id: master,
           event: cdp.trackEvent({ id, event: 'Consent Updated', properties, tsMs }) };
}

let ann, bob;
test.before(async () => {
  ann = await person('ann');
  bob = await person('bob');
});

test('GetPolicy reports the configuration', async () => {
  const p = await cdp.call(cns, 'GetPolicy', {});
  assert.deepEqual(p.purposes, ['marketing', 'analytics', 'personalization', 'profiling']);
  assert.ok(p.channels.includes('whatsapp') && p.channels.includes('email'));
  assert.equal(p.default_jurisdiction, 'gdpr');
  const j = Object.fromEntries(p.jurisdictions.map((x) => [x.jurisdiction, x.unset_allows]));
  assert.deepEqual(j.gdpr, { marketing: false, analytics: false, personalization: false });
  assert.deepEqual(j.ccpa, { marketing: true, analytics: true, personalization: true });
});

test('defaults per jurisdiction and the global default', async () => {
  let d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'email' });
  assert.equal(d.allowed, false);
  assert.equal(d.rule, 'DECISION_RULE_JURISDICTION_DEFAULT');
  assert.equal(d.jurisdiction, 'gdpr');
  assert.match(d.reason, /gdpr default for marketing is deny/);
  d = await check({ master_id: ann.master, purpose: 'profiling', channel: 'email' });
  assert.equal(d.allowed, false);
  assert.equal(d.rule, 'DECISION_RULE_GLOBAL_DEFAULT');
  // bob moves to ccpa: unset means allowed until he opts out
  const st = await cdp.call(cns, 'SetConsent', { master_id: bob.master, actor: 'crm', jurisdiction: 'ccpa' });
  assert.equal(st.jurisdiction, 'ccpa');
  d = await check({ master_id: bob.master, purpose: 'marketing', channel: 'sms' });
  assert.equal(d.allowed, true);
  assert.equal(d.rule, 'DECISION_RULE_JURISDICTION_DEFAULT');
  assert.equal(d.jurisdiction, 'ccpa');
  d = await check({ master_id: bob.master, purpose: 'profiling', channel: 'sms' });
  assert.equal(d.allowed, false);
  assert.equal(d.rule, 'DECISION_RULE_GLOBAL_DEFAULT');
});

test('set/get and precedence: channel entry, then all channels', async () => {
  const st = await cdp.call(cns, 'SetConsent', {
    identifier: cdp.ident('email', ann.email.toUpperCase()), actor: 'preference-center',
    entries: [entry('marketing', '*', 'CONSENT_STATUS_GRANTED', { source: 'checkout', legal_basis: 'consent' })] });
  assert.equal(st.master_id, ann.master);
  assert.equal(st.entries.length, 1);
  assert.equal(st.entries[0].source, 'checkout');
  assert.equal(st.entries[0].actor, 'preference-center');
  let d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'sms' });
  assert.equal(d.allowed, true);
  assert.equal(d.rule, 'DECISION_RULE_EXPLICIT_ALL_CHANNELS');
  assert.equal(d.status, 'CONSENT_STATUS_GRANTED');
  await cdp.call(cns, 'SetConsent', { master_id: ann.master, actor: 'agent-7',
    entries: [entry('marketing', 'sms', 'CONSENT_STATUS_DENIED')] });
  d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'sms' });
  assert.equal(d.allowed, false);
  assert.equal(d.rule, 'DECISION_RULE_EXPLICIT_CHANNEL');
  d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'email' });
  assert.equal(d.allowed, true);
  assert.equal(d.rule, 'DECISION_RULE_EXPLICIT_ALL_CHANNELS');
  // an unset entry counts as no entry: the all-channels entry decides again
  await cdp.call(cns, 'SetConsent', { master_id: ann.master, actor: 'agent-7',
    entries: [entry('marketing', 'sms', 'CONSENT_STATUS_UNSET')] });
  d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'sms' });
  assert.equal(d.rule, 'DECISION_RULE_EXPLICIT_ALL_CHANNELS');
  const g = await cdp.call(cns, 'GetConsent', { identifier: cdp.ident('email', ann.email) });
  assert.equal(g.master_id, ann.master);
  assert.equal(g.jurisdiction, 'gdpr');
  assert.deepEqual(g.entries.map((e) => `${e.purpose}/${e.channel}=${e.status}`),
    ['marketing/*=CONSENT_STATUS_GRANTED', 'marketing/sms=CONSENT_STATUS_UNSET']);
  // an older updated_at does not overwrite a newer entry
  await cdp.call(cns, 'SetConsent', { master_id: ann.master, actor: 'late-import',
    entries: [entry('marketing', '*', 'CONSENT_STATUS_DENIED', { updated_at: cdp.timestamp(T0) })] });
  d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'email' });
  assert.equal(d.allowed, true);
});

test('suppression by normalized email blocks whatever the profile says', async () => {
  const s = await cdp.call(cns, 'Suppress', { identifier: cdp.ident('email', `  ${ann.email.replace('ann', 'ANN')} `),
    reason: 'global_unsubscribe', actor: 'support' });
  assert.equal(s.identifier.value, ann.email);
  let d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'email' });
  assert.equal(d.allowed, false);
  assert.equal(d.rule, 'DECISION_RULE_SUPPRESSION');
  assert.ok(d.reason.includes(`email:${ann.email}`) && d.reason.includes('global_unsubscribe'), d.reason);
  // a phone suppressed for sms only
  await cdp.call(cns, 'Suppress', { identifier: bob.ids.find((i) => i.type === 'phone'),
    reason: 'legal_hold', actor: 'legal', channels: ['sms'] });
  d = await check({ identifier: cdp.ident('email', bob.email), purpose: 'marketing', channel: 'sms' });
  assert.equal(d.rule, 'DECISION_RULE_SUPPRESSION');
  assert.equal(d.master_id, bob.master);
  d = await check({ master_id: bob.master, purpose: 'marketing', channel: 'email' });
  assert.equal(d.allowed, true);
  assert.equal(d.rule, 'DECISION_RULE_JURISDICTION_DEFAULT');
  // paging over the list
  const keys = [];
  let token = '';
  do {
    const r = await cdp.call(cns, 'ListSuppressions', { page_size: 1, page_token: token });
    assert.ok(r.suppressions.length <= 1);
    keys.push(...r.suppressions.map((x) => `${x.identifier.type}:${x.identifier.value}`));
    token = r.next_page_token;
  } while (token);
  assert.ok(keys.includes(`email:${ann.email}`));
  assert.equal(new Set(keys).size, keys.length);
  // lifted: the entry decides again
  let u = await cdp.call(cns, 'Unsuppress', { identifier: cdp.ident('email', ann.email), actor: 'support' });
  assert.equal(u.removed, true);
  u = await cdp.call(cns, 'Unsuppress', { identifier: cdp.ident('email', ann.email), actor: 'support' });
  assert.equal(u.removed, false);
  d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'email' });
  assert.equal(d.rule, 'DECISION_RULE_EXPLICIT_ALL_CHANNELS');
});

test('an identifier identity does not know is still decided', async () => {
  const ghost = `ghost.${run}@example.com`;
  let d = await check({ identifier: cdp.ident('email', ghost), purpose: 'marketing', channel: 'email' });
  assert.equal(d.rule, 'DECISION_RULE_JURISDICTION_DEFAULT');
  assert.equal(d.master_id, '');
  assert.match(d.reason, /not known to identity/);
  await cdp.call(cns, 'Suppress', { identifier: cdp.ident('email', ghost), reason: 'bounce', actor: 'esp' });
  d = await check({ identifier: cdp.ident('email', ghost.toUpperCase()), purpose: 'analytics', channel: 'email' });
  assert.equal(d.rule, 'DECISION_RULE_SUPPRESSION');
  const r = await cdp.callStatus(cns, 'SetConsent', { identifier: cdp.ident('email', ghost), actor: 'x',
    entries: [entry('marketing', '*', 'CONSENT_STATUS_GRANTED')] });
  assert.equal(r.code, NOT_FOUND);
  assert.match(r.details, /profile not found/);
});

test('batch checks answer in order; a bad check names its index', async () => {
  const r = await cdp.call(cns, 'CheckConsentBatch', { checks: [
    { master_id: ann.master, purpose: 'marketing', channel: 'email' },
    { master_id: bob.master, purpose: 'marketing', channel: 'sms' },
    { master_id: bob.master, purpose: 'marketing', channel: 'push' },
    { master_id: ann.master, purpose: 'analytics', channel: 'push' }] });
  assert.deepEqual(r.decisions.map((d) => [d.master_id, d.rule, d.allowed]), [
    [ann.master, 'DECISION_RULE_EXPLICIT_ALL_CHANNELS', true],
    [bob.master, 'DECISION_RULE_SUPPRESSION', false],
    [bob.master, 'DECISION_RULE_JURISDICTION_DEFAULT', true],
    [ann.master, 'DECISION_RULE_JURISDICTION_DEFAULT', false]]);
  const bad = await cdp.callStatus(cns, 'CheckConsentBatch', { checks: [
    { master_id: ann.master, purpose: 'marketing', channel: 'email' },
    { master_id: ann.master, purpose: 'marketing', channel: 'telegraph' }] });
  assert.equal(bad.code, INVALID);
  assert.match(bad.details, /^checks\[1\]\.channel: unknown channel/);
});

test('audit trail: changes with before/after, denials at send time, suppressions', async () => {
  const before = (await audit(ann.master)).length;
  await cdp.call(cns, 'SetConsent', { master_id: ann.master, actor: 'dpo',
    entries: [entry('marketing', '*', 'CONSENT_STATUS_REVOKED')] });
  const d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'whatsapp',
    actor: 'activation/wa-promo', record_denial: true, context: 'delivery-42' });
  assert.equal(d.allowed, false);
  // an allowed check records nothing, even with record_denial
  await check({ master_id: bob.master, purpose: 'marketing', channel: 'email', record_denial: true });
  const recs = await audit(ann.master);
  assert.equal(recs.length, before + 2);
  const set = recs[recs.length - 2];
  assert.equal(set.action, 'set');
  assert.equal(set.actor, 'dpo');
  assert.equal(set.before.status, 'CONSENT_STATUS_GRANTED');
  assert.equal(set.after.status, 'CONSENT_STATUS_REVOKED');
  const den = recs[recs.length - 1];
  assert.equal(den.action, 'denied_at_send');
  assert.equal(den.actor, 'activation/wa-promo');
  assert.equal(den.context, 'delivery-42');
  assert.equal(den.channel, 'whatsapp');
  assert.match(den.reason, /marketing\/\* is revoked/);
  assert.ok(recs.some((r) => r.action === 'suppress' && r.actor === 'support' &&
    r.reason === 'global_unsubscribe' && r.context.includes(`email:${ann.email}`)));
  assert.ok(recs.some((r) => r.action === 'unsuppress'));
  assert.equal((await audit(bob.master)).filter((r) => r.action === 'denied_at_send').length, 0);
  // the first set has no before; pages of 2 give the same trail, oldest first
  assert.equal(recs[0].action, 'set');
  assert.equal(recs[0].before, null);
  const paged = await audit(ann.master, 2);
  assert.deepEqual(paged.map((r) => r.id), recs.map((r) => r.id));
  const ids = recs.map((r) => r.id);
  assert.deepEqual([...ids].sort((a, b) => (BigInt(a.split('-')[0]) < BigInt(b.split('-')[0]) ? -1 : 0)), ids);
});

test('consent events: applied once, replay is a duplicate, last write wins', async () => {
  const t = Date.now() - 60000;
  const e1 = consentEvent(`ce1-${run}`, ann.master, t, { purpose: 'analytics', channel: 'email', status: 'granted' });
  const other = { master_id: ann.master, event: cdp.trackEvent({ id: `oc-${run}`, event: 'Order Completed', tsMs: t }) };
  const bad = consentEvent(`ce-bad-${run}`, ann.master, t, { purpose: 'analytics', status: 'maybe' });
  let r = await cdp.call(cns, 'ApplyConsentEvents', { events: [e1, other, bad] });
  assert.equal(r.applied, 1);
  assert.equal(r.duplicates, 0);
  assert.equal(r.errors.length, 1);
  assert.match(r.errors[0], /^events\[2\] \(ce-bad-.*\): properties\.status: must be granted/);
  const n1 = (await audit(ann.master)).filter((x) => x.action === 'event').length;
  assert.equal(n1, 1);
  r = await cdp.call(cns, 'ApplyConsentEvents', { events: [e1, other] });
  assert.equal(r.applied, 0);
  assert.equal(r.duplicates, 1);
  assert.equal((await audit(ann.master)).filter((x) => x.action === 'event').length, 1);
  let d = await check({ master_id: ann.master, purpose: 'analytics', channel: 'email' });
  assert.equal(d.allowed, true);
  assert.equal(d.rule, 'DECISION_RULE_EXPLICIT_CHANNEL');
  // an older event arriving late changes nothing and records nothing
  const late = consentEvent(`ce0-${run}`, ann.master, t - 10000, { purpose: 'analytics', channel: 'email', status: 'denied' });
  r = await cdp.call(cns, 'ApplyConsentEvents', { events: [late] });
  assert.equal(r.applied, 1);
  d = await check({ master_id: ann.master, purpose: 'analytics', channel: 'email' });
  assert.equal(d.allowed, true);
  assert.equal((await audit(ann.master)).filter((x) => x.action === 'event').length, 1);
  // same time: the greater message id wins
  const tie = consentEvent(`ce1-${run}-z`, ann.master, t, { purpose: 'analytics', channel: 'email', status: 'revoked' });
  await cdp.call(cns, 'ApplyConsentEvents', { events: [tie] });
  d = await check({ master_id: ann.master, purpose: 'analytics', channel: 'email' });
  assert.equal(d.status, 'CONSENT_STATUS_REVOKED');
  // several changes in one event, one of them setting the jurisdiction
  const multi = consentEvent(`ce2-${run}`, ann.master, t + 1000, { consents: [
    { purpose: 'personalization', status: 'granted', source: 'app' },
    { purpose: 'analytics', channel: 'push', status: 'denied', jurisdiction: 'ccpa', legal_basis: 'consent' }] });
  r = await cdp.call(cns, 'ApplyConsentEvents', { events: [multi] });
  assert.equal(r.applied, 1);
  const g = await cdp.call(cns, 'GetConsent', { master_id: ann.master });
  assert.equal(g.jurisdiction, 'ccpa');
  const p = g.entries.find((e) => e.purpose === 'personalization' && e.channel === '*');
  assert.equal(p.actor, 'event:app');
  assert.equal(p.message_id, `ce2-${run}`);
  assert.equal(Number(p.updated_at.seconds), Math.floor((t + 1000) / 1000));
  const recs = await audit(ann.master);
  assert.ok(recs.some((x) => x.action === 'jurisdiction' && x.before.jurisdiction === 'gdpr' &&
    x.after.jurisdiction === 'ccpa'));
  d = await check({ master_id: ann.master, purpose: 'marketing', channel: 'push' });
  assert.equal(d.jurisdiction, 'ccpa');
});

// Identity picks the oldest master id (time first) as survivor: people made
// in separate milliseconds have a known order.
async function personAfter(name) {
  const t = Date.now();
  while (Date.now() <= t) await cdp.sleep(1);
  return person(name);
}
// Merges people through identity (one Resolve with an identifier of each)
// and, as ingestion's pipeline does, hands the resolved event with its
// merges to profile (which tombstones the loser), then to consent.
async function merge(people, tag) {
  const ids = people.map((p) => cdp.ident('email', p.email));
  const r = await cdp.call(idn, 'Resolve', { identifiers: ids, message_id: `mrg-${tag}-${run}` });
  assert.ok(r.merges.length >= 1, `no merge: ${JSON.stringify(r)}`);
  const resolved = { event: cdp.identifyEvent({ id: `mrg-${tag}-${run}`, ids, tsMs: Date.now() - 1000 }),
                     master_id: r.master_id, merges: r.merges, identifiers: r.identifiers };
  assert.equal((await cdp.call(prf, 'ApplyEvents', { events: [resolved] })).applied, 1);
  return { r, resolved };
}
const state = (g) => Object.fromEntries(g.entries.map((e) => [`${e.purpose}/${e.channel}`, e.status]));

test('merge: the loser\'s consent folds into the survivor by stamp, once', async () => {
  const b = await personAfter('bea');  // older: the survivor
  const a = await personAfter('al');   // newer: merged into b
  const t = Date.now() - 600000;
  await cdp.call(cns, 'SetConsent', { master_id: b.master, actor: 'crm', entries: [
    entry('marketing', 'email', 'CONSENT_STATUS_GRANTED', { updated_at: cdp.timestamp(t) }),
    entry('personalization', '*', 'CONSENT_STATUS_GRANTED', { updated_at: cdp.timestamp(t + 3000) })] });
  await cdp.call(cns, 'SetConsent', { master_id: a.master, actor: 'pref-center', jurisdiction: 'ccpa', entries: [
    entry('marketing', 'email', 'CONSENT_STATUS_DENIED', { jurisdiction: 'ccpa', updated_at: cdp.timestamp(t + 2000) }),
    entry('analytics', 'sms', 'CONSENT_STATUS_GRANTED', { updated_at: cdp.timestamp(t + 1000) }),
    entry('personalization', '*', 'CONSENT_STATUS_DENIED', { updated_at: cdp.timestamp(t + 1000) })] });
  const trailBefore = (await audit(b.master)).length;

  const { r, resolved } = await merge([a, b], 'ab');
  assert.equal(r.master_id, b.master);
  const m = r.merges.find((x) => x.loser_id === a.master);
  assert.ok(m && m.survivor_id === b.master, JSON.stringify(r.merges));
  // the window: until consent's step runs, the survivor lacks a's entries
  let d = await check({ master_id: b.master, purpose: 'marketing', channel: 'email' });
  assert.equal(d.allowed, true);

  let res = await cdp.call(cns, 'ApplyConsentEvents', { events: [resolved] });
  assert.deepEqual([res.applied, res.duplicates, res.errors.length], [0, 0, 0]);
  const g = await cdp.call(cns, 'GetConsent', { master_id: b.master });
  assert.equal(g.jurisdiction, 'ccpa');  // b had none: a's arrives
  assert.deepEqual(state(g), {
    'marketing/email': 'CONSENT_STATUS_DENIED',        // a's opt-out is newer
    'analytics/sms': 'CONSENT_STATUS_GRANTED',         // only a had it
    'personalization/*': 'CONSENT_STATUS_GRANTED' });  // b's own is newer: kept
  const moved = g.entries.find((e) => e.purpose === 'marketing' && e.channel === 'email');
  assert.equal(moved.actor, 'pref-center');
  assert.equal(Number(moved.updated_at.seconds), Math.floor((t + 2000) / 1000));
  d = await check({ master_id: b.master, purpose: 'marketing', channel: 'email' });
  assert.equal(d.allowed, false);
  assert.equal(d.rule, 'DECISION_RULE_EXPLICIT_CHANNEL');
  assert.equal(d.jurisdiction, 'ccpa');
  // a's id and a's identifier now decide on b's state
  d = await check({ master_id: a.master, purpose: 'marketing', channel: 'email' });
  assert.deepEqual([d.master_id, d.allowed], [b.master, false]);
  d = await check({ identifier: cdp.ident('email', a.email), purpose: 'analytics', channel: 'sms' });
  assert.deepEqual([d.master_id, d.allowed, d.rule], [b.master, true, 'DECISION_RULE_EXPLICIT_CHANNEL']);

  const recs = (await audit(b.master)).slice(trailBefore);
  assert.ok(recs.every((x) => x.action === 'merge' && x.actor === `merge:${a.master}` &&
    x.context === m.message_id), JSON.stringify(recs));
  assert.deepEqual(recs.map((x) => x.purpose ? `${x.purpose}/${x.channel}` : 'jurisdiction').sort(),
    ['analytics/sms', 'jurisdiction', 'marketing/email']);
  const mk = recs.find((x) => x.purpose === 'marketing');
  assert.equal(mk.before.status, 'CONSENT_STATUS_GRANTED');
  assert.equal(mk.after.status, 'CONSENT_STATUS_DENIED');
  assert.equal(recs.find((x) => x.purpose === 'analytics').before, null);
  const jr = recs.find((x) => !x.purpose);
  assert.deepEqual([jr.before.jurisdiction, jr.after.jurisdiction], ['gdpr', 'ccpa']);

  // a replayed batch (the pipeline retries) changes and records nothing
  res = await cdp.call(cns, 'ApplyConsentEvents', { events: [resolved, resolved] });
  assert.deepEqual([res.applied, res.duplicates, res.errors.length], [0, 0, 0]);
  assert.equal((await audit(b.master)).length, trailBefore + recs.length);
  assert.deepEqual(state(await cdp.call(cns, 'GetConsent', { master_id: b.master })), state(g));
});

test('merge: a chain ends with every entry on the last survivor, folds in either order', async () => {
  const e = await personAfter('eve');
  const c = await personAfter('cy');
  const d = await personAfter('dee');
  const t = Date.now() - 600000;
  const put = (p, purpose, channel, status, ms) => cdp.call(cns, 'SetConsent', { master_id: p.master,
    actor: `crm-${purpose}`, entries: [entry(purpose, channel, status, { updated_at: cdp.timestamp(ms) })] });
  await put(d, 'marketing', 'sms', 'CONSENT_STATUS_REVOKED', t + 2000);
  await put(d, 'analytics', '*', 'CONSENT_STATUS_DENIED', t + 1000);
  await put(c, 'marketing', 'sms', 'CONSENT_STATUS_GRANTED', t + 1000);
  await put(c, 'analytics', '*', 'CONSENT_STATUS_GRANTED', t + 3000);
  await put(e, 'personalization', 'push', 'CONSENT_STATUS_GRANTED', t);
  // identity: d into c, then c into e; profile folds both as they happen
  const dc = await merge([c, d], 'dc');
  assert.equal(dc.r.master_id, c.master);
  const ce = await merge([c, e], 'ce');
  assert.equal(ce.r.master_id, e.master);
  assert.ok(ce.r.merges.some((x) => x.loser_id === c.master && x.survivor_id === e.master));
  // consent sees the later merge first: c into e, then d into c, which
  // follows c's tombstone to e
  let res = await cdp.call(cns, 'ApplyConsentEvents', { events: [ce.resolved] });
  assert.equal(res.errors.length, 0);
  res = await cdp.call(cns, 'ApplyConsentEvents', { events: [dc.resolved] });
  assert.equal(res.errors.length, 0);
  const g = await cdp.call(cns, 'GetConsent', { master_id: e.master });
  assert.deepEqual(state(g), {
    'analytics/*': 'CONSENT_STATUS_GRANTED',
    'marketing/sms': 'CONSENT_STATUS_REVOKED',
    'personalization/push': 'CONSENT_STATUS_GRANTED' });
  const recs = (await audit(e.master)).filter((x) => x.action === 'merge');
  assert.deepEqual(recs.map((x) => `${x.actor} ${x.purpose}/${x.channel}`).sort(), [
    `merge:${c.master} analytics/*`, `merge:${c.master} marketing/sms`, `merge:${d.master} marketing/sms`]);
  // both again, in the other order: nothing changes, nothing is recorded
  await cdp.call(cns, 'ApplyConsentEvents', { events: [dc.resolved, ce.resolved] });
  assert.equal((await audit(e.master)).filter((x) => x.action === 'merge').length, recs.length);
  assert.deepEqual(state(await cdp.call(cns, 'GetConsent', { master_id: e.master })), state(g));
});

test('merge: a malformed merge is reported, not applied', async () => {
  const res = await cdp.call(cns, 'ApplyConsentEvents', { events: [
    { master_id: ann.master, event: cdp.trackEvent({ id: `mx-${run}`, event: 'Order Completed' }),
      merges: [{ survivor_id: ann.master, loser_id: '', message_id: 'm' },
               { survivor_id: ann.master, loser_id: ann.master, message_id: 'm' }] }] });
  assert.deepEqual(res.errors, [`events[0] (mx-${run}): merges[0].loser_id: required`,
    `events[0] (mx-${run}): merges[1].survivor_id: same as loser_id`]);
});

test('bad input names the field', async () => {
  const cases = [
    ['SetConsent', { master_id: ann.master, entries: [entry('marketing', '*', 'CONSENT_STATUS_GRANTED')] }, /^actor: required/],
    ['SetConsent', { master_id: ann.master, actor: 'a', entries: [entry('spam', '*', 'CONSENT_STATUS_GRANTED')] }, /^entries\[0\]\.purpose: unknown purpose/],
    ['SetConsent', { master_id: ann.master, actor: 'a', entries: [entry('marketing', 'fax', 'CONSENT_STATUS_GRANTED')] }, /^entries\[0\]\.channel: unknown channel/],
    ['SetConsent', { master_id: ann.master, actor: 'a', jurisdiction: 'lgpd' }, /^jurisdiction: unknown jurisdiction/],
    ['SetConsent', { master_id: ann.master, actor: 'a', entries: [entry('marketing', '*', 'CONSENT_STATUS_GRANTED', { legal_basis: 'vibes' })] }, /^entries\[0\]\.legal_basis/],
    ['SetConsent', { master_id: ann.master, actor: 'a', entries: [entry('marketing', '*', 'CONSENT_STATUS_GRANTED', { updated_at: cdp.timestamp(Date.now() + 3 * 86400000) })] }, /^entries\[0\]\.updated_at: more than/],
    ['CheckConsent', { purpose: 'marketing', channel: 'email' }, /^master_id, identifier: exactly one/],
    ['CheckConsent', { master_id: ann.master, purpose: 'marketing', channel: '*' }, /^channel: unknown channel/],
    ['CheckConsent', { identifier: cdp.ident('email', 'not-an-email'), purpose: 'marketing', channel: 'email' }, /^identifier\.value: /],
    ['Suppress', { identifier: cdp.ident('email', 'a@b.co'), actor: 's', channels: ['pigeon'] }, /^channels\[0\]: unknown channel/],
    ['Suppress', { identifier: cdp.ident('email', 'a@b.co') }, /^actor: required/],
    ['GetAudit', { master_id: ann.master, page_token: 'nope' }, /^page_token: /],
    ['GetAudit', { master_id: ann.master, page_size: 5000 }, /^page_size: /],
    ['ListSuppressions', { page_size: -1 }, /^page_size: /],
  ];
  for (const [method, req, re] of cases) {
    const r = await cdp.callStatus(cns, method, req);
    assert.equal(r.code, INVALID, `${method} ${JSON.stringify(req)}: ${r.code} ${r.details}`);
    assert.match(r.details, re);
  }
  const nf = await cdp.callStatus(cns, 'SetConsent', { master_id: `nobody-${run}`, actor: 'a',
    entries: [entry('marketing', '*', 'CONSENT_STATUS_GRANTED')] });
  assert.equal(nf.code, NOT_FOUND);
  const ga = await cdp.callStatus(cns, 'GetAudit', { identifier: cdp.ident('email', `nobody.${run}@example.com`) });
  assert.equal(ga.code, NOT_FOUND);
  assert.equal((await cdp.call(cns, 'CheckConsent', { master_id: ann.master, purpose: 'marketing', channel: 'email' })).master_id, ann.master);
  assert.ok(OK === 0);
});
EOF
ITEST_INTEROP=$ITEST_INTEROP node --test "$scenario" || itest_fail "consent scenario failed"
itest_pass
