// pipeline.js: the event pipeline end to end, run by
// tests/integration/test_pipeline.sh as `node --test` against ingestion,
// profile and two identity replicas sharing one Redis.
//
//   - exact counts: 2,000 events for 40 people through Ingest; every profile
//     reflects exactly what was sent (counts per event name, total, revenue);
//     re-sending the same batches answers DUPLICATE for all and changes
//     nothing;
//   - identity under concurrency: for each of 5 new people, 60 concurrent
//     Resolve calls spread over both replicas plus 20 concurrent Track calls,
//     with overlapping identifier subsets, end in ONE master id that Lookup
//     and GetIdentities agree on from both replicas, and whose profile holds
//     exactly the 20 events;
//   - merges: two people linked by a later event fold into the older master
//     id, with counts summed exactly once, and the loser's identifiers and id
//     keep leading to the survivor.
//
// Environment: CDP_TEST_INGESTION_ADDR, CDP_TEST_IDENTITY_ADDR,
// CDP_TEST_IDENTITY2_ADDR, CDP_TEST_PROFILE_ADDR, CDP_TEST_RUN_ID.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const cdp = require('../lib/cdp');

const PEOPLE = 40;
const EVENTS = 2000;
const BATCH = 250;
const NAMES = ['Product Viewed', 'Added to Cart', 'Order Completed', 'identify'];
const REVENUE_STEP = 0.25;          // exact in binary floating point
const DRAIN_WAIT_MS = 90000;
const CONC_PEOPLE = 5;
const CONC_RESOLVES = 60;
const CONC_TRACKS = 20;
const IDENT_TYPES = 5;
const MERGE_WAIT_MS = 30000;

const run = cdp.runId();
const seed = [...run].reduce((h, ch) => (Math.imul(h, 31) + ch.charCodeAt(0)) | 0, 7);
const random = cdp.rng(seed);
const pick = (n) => Math.floor(random() * n);

let ing, prf, idn1, idn2;

test.before(() => {
  ing = cdp.client('ingestion', cdp.env('CDP_TEST_INGESTION_ADDR'));
  prf = cdp.client('profile', cdp.env('CDP_TEST_PROFILE_ADDR'));
  idn1 = cdp.client('identity', cdp.env('CDP_TEST_IDENTITY_ADDR'));
  idn2 = cdp.client('identity', cdp.env('CDP_TEST_IDENTITY2_ADDR'));
});

test.after(() => [ing, prf, idn1, idn2].forEach((c) => c.close()));

// ---------------------------------------------------------------- exact counts

// makeLoad() -> { batches, expected }: EVENTS random events over PEOPLE
// people (each by user_id, some also by email) and the profile each person
// must end with.
function makeLoad() {
  const expected = [];
  for (let p = 0; p < PEOPLE; p++) expected.push({ counts: {}, total: 0, revenue: 0 });
  const events = [];
  const t0 = Date.now() - 3600 * 1000;
  for (let i = 0; i < EVENTS; i++) {
    const p = i < PEOPLE ? i : pick(PEOPLE);   // everyone gets at least one
    const name = NAMES[pick(NAMES.length)];
    const ids = [cdp.ident('user_id', `pl-${run}-${p}`)];
    if (random() < 0.3) ids.push(cdp.ident('email', `pl.${p}.${run}@example.com`));
    const id = `pl-${run}-ev-${i}`;
    const tsMs = t0 + i;
    let ev;
    if (name === 'identify') {
      ev = cdp.identifyEvent({ id, ids, traits: { tier: `t${i % 3}`, seq: i }, tsMs });
    } else {
      const properties = { seq: i };
      if (name === 'Order Completed') {
        properties.revenue = (1 + pick(400)) * REVENUE_STEP;
        expected[p].revenue += properties.revenue;
      }
      ev = cdp.trackEvent({ id, event: name, ids, properties, channel: 'web', tsMs });
    }
    expected[p].counts[name] = (expected[p].counts[name] || 0) + 1;
    expected[p].total++;
    events.push(ev);
  }
  const batches = [];
  for (let i = 0; i < events.length; i += BATCH) batches.push(events.slice(i, i + BATCH));
  return { batches, expected };
}

// drained(expected) -> resolves when every person's total equals the
// expected total; returns the views.
function drained(expected, extra = 0) {
  return cdp.waitFor('every profile to reflect its events', async () => {
    const views = await Promise.all(expected.map((_, p) =>
      cdp.getProfile(prf, cdp.ident('user_id', `pl-${run}-${p}`))));
    const done = views.every((v, p) => v && Number(v.total_events) === expected[p].total + extra);
    return done ? views : null;
  }, DRAIN_WAIT_MS, 250);
}

test('2,000 events for 40 people are reflected exactly, and re-sending changes nothing', async () => {
  const { batches, expected } = makeLoad();
  const started = Date.now();
  for (const events of batches) {
    const r = await cdp.call(ing, 'Ingest', { events }, 15000);
    assert.equal(r.accepted, events.length, `all accepted: ${JSON.stringify(r.results.find(
      (x) => x.status !== 'EVENT_STATUS_ACCEPTED'))}`);
  }
  const acked = Date.now();
  const views = await drained(expected);
  console.log(`# ${EVENTS} events acked in ${acked - started} ms, drained ${Date.now() - acked} ms later`);

  const masters = new Set();
  views.forEach((v, p) => {
    masters.add(v.master_id);
    const want = Object.fromEntries(Object.entries(expected[p].counts).sort());
    const got = Object.fromEntries(Object.entries(cdp.counts(v)).sort());
    assert.deepEqual(got, want, `counts of person ${p}`);
    assert.equal(v.revenue, expected[p].revenue, `revenue of person ${p}`);
  });
  const people = expected.filter((e) => e.total > 0).length;
  assert.equal(masters.size, people, 'one master id per person');

  for (const events of batches) {
    const r = await cdp.call(ing, 'Ingest', { events }, 15000);
    assert.equal(r.duplicates, events.length, 'a re-sent batch is all DUPLICATE');
    assert.ok(r.results.every((x) => x.status === 'EVENT_STATUS_DUPLICATE'));
  }
  // One new event per person after the duplicates: once it is reflected,
  // anything the re-send had wrongly appended before it would show too.
  const sentinels = expected.map((_, p) => cdp.trackEvent({
    id: `pl-${run}-sentinel-${p}`, event: 'Sentinel', ids: [cdp.ident('user_id', `pl-${run}-${p}`)],
  }));
  const r = await cdp.call(ing, 'Ingest', { events: sentinels }, 15000);
  assert.equal(r.accepted, sentinels.length);
  for (const e of expected) {
    e.counts.Sentinel = 1;
    e.total++;
  }
  const after = await drained(expected);
  after.forEach((v, p) => {
    assert.equal(Number(v.total_events), expected[p].total, `total of person ${p} after re-send`);
    assert.equal(v.revenue, expected[p].revenue, `revenue of person ${p} after re-send`);
  });
});

// ---------------------------------------------------------------- identity

// personIds(k) -> the IDENT_TYPES identifiers of concurrent person k, as
// identity stores them (already normalized).
function personIds(k) {
  return [
    cdp.ident('user_id', `cc-${run}-${k}`),
    cdp.ident('email', `cc.${k}.${run}@example.com`),
    cdp.ident('phone', `+3519${String((Math.abs(seed) + k * 7919) % 1e8).padStart(8, '0')}`),
    cdp.ident('device_id', `dev-${run}-${k}`),
    cdp.ident('anonymous_id', `anon-${run}-${k}`),
  ];
}

// subset(ids, j): request j's identifiers: two consecutive ones (so the
// union over all requests is connected) and sometimes a third.
function subset(ids, j) {
  const a = j % IDENT_TYPES;
  const out = [ids[a], ids[(a + 1) % IDENT_TYPES]];
  if (j % 3 === 0) out.push(ids[(a + 3) % IDENT_TYPES]);
  return out;
}

test('concurrent Resolve and Track of one new person over two replicas end in one master id', async () => {
  const calls = [];
  const resolved = [];
  for (let k = 0; k < CONC_PEOPLE; k++) {
    const ids = personIds(k);
    resolved.push([]);
    for (let j = 0; j < CONC_RESOLVES; j++) {
      const c = j % 2 ? idn2 : idn1;
      calls.push(cdp.call(c, 'Resolve', { identifiers: subset(ids, j), message_id: `cc-${run}-${k}-r${j}` }, 15000)
        .then((r) => resolved[k].push(r.master_id)));
    }
    for (let j = 0; j < CONC_TRACKS; j++) {
      const ev = cdp.trackEvent({ id: `cc-${run}-${k}-t${j}`, event: 'Concurrent', ids: subset(ids, j + 1) });
      calls.push(cdp.call(ing, 'Track', ev, 15000)
        .then((r) => assert.equal(r.status, 'EVENT_STATUS_ACCEPTED')));
    }
  }
  await Promise.all(calls);

  const survivors = new Set();
  for (let k = 0; k < CONC_PEOPLE; k++) {
    const ids = personIds(k);
    const seen = [];
    for (const c of [idn1, idn2]) {
      for (const identifier of ids) seen.push((await cdp.call(c, 'Lookup', { identifier })).master_id);
    }
    const master = seen[0];
    assert.ok(master, `person ${k}: Lookup finds a master id`);
    assert.deepEqual(new Set(seen), new Set([master]), `person ${k}: every identifier on both replicas agrees`);
    survivors.add(master);
    for (const c of [idn1, idn2]) {
      const g = await cdp.call(c, 'GetIdentities', { master_id: master });
      assert.equal(g.master_id, master);
      const have = new Set(g.identifiers.map((i) => `${i.type}:${i.value}`));
      for (const i of ids) assert.ok(have.has(`${i.type}:${i.value}`), `person ${k}: ${i.type} listed`);
    }
    for (const m of new Set(resolved[k])) {
      const g = await cdp.call(idn1, 'GetIdentities', { master_id: m });
      assert.equal(g.master_id, master, `person ${k}: master id ${m} returned by Resolve leads to the survivor`);
    }
    for (const identifier of ids) {
      const v = await cdp.waitFor(`person ${k}'s profile by ${identifier.type} with ${CONC_TRACKS} events`,
        async () => {
          const p = await cdp.getProfile(prf, identifier);
          return p && p.master_id === master && Number(p.total_events) === CONC_TRACKS ? p : null;
        }, MERGE_WAIT_MS);
      assert.deepEqual(cdp.counts(v), { Concurrent: CONC_TRACKS });
    }
  }
  assert.equal(survivors.size, CONC_PEOPLE, 'different people keep different master ids');
});

// ---------------------------------------------------------------- merges

test('a later event linking two people merges them into the older master id, counted once', async () => {
  const email = cdp.ident('email', `mg.a.${run}@example.com`);
  const phone = cdp.ident('phone', `+3519${String((Math.abs(seed) + 424242) % 1e8).padStart(8, '0')}`);
  const waitTotal = (identifier, total) => cdp.waitFor(`${identifier.type} profile with ${total} events`,
    async () => {
      const p = await cdp.getProfile(prf, identifier);
      return p && Number(p.total_events) === total ? p : null;
    }, MERGE_WAIT_MS);

  const orders = [1, 2, 3].map((i) => cdp.trackEvent({
    id: `mg-${run}-a${i}`, event: 'Order Completed', ids: [email], properties: { revenue: 10 * i },
  }));
  assert.equal((await cdp.call(ing, 'Ingest', { events: orders })).accepted, 3);
  const a = await waitTotal(email, 3);

  const views = [1, 2].map((i) => cdp.trackEvent({ id: `mg-${run}-b${i}`, event: 'Product Viewed', ids: [phone] }));
  assert.equal((await cdp.call(ing, 'Ingest', { events: views })).accepted, 2);
  const b = await waitTotal(phone, 2);
  assert.notEqual(a.master_id, b.master_id);

  // The newer person's identifier comes first: age, not order, decides.
  const link = cdp.identifyEvent({ id: `mg-${run}-link`, ids: [phone, email], traits: { linked: true } });
  assert.equal((await cdp.call(ing, 'Track', link)).status, 'EVENT_STATUS_ACCEPTED');
  const merged = await waitTotal(email, 6);
  assert.equal(merged.master_id, a.master_id, 'the older master id survives');
  const viaPhone = await waitTotal(phone, 6);
  assert.equal(viaPhone.master_id, a.master_id);
  assert.deepEqual(cdp.counts(merged), { 'Order Completed': 3, 'Product Viewed': 2, identify: 1 });
  assert.equal(merged.revenue, 60);
  assert.ok(merged.merged_ids.includes(b.master_id));

  assert.equal((await cdp.call(idn1, 'Lookup', { identifier: phone })).master_id, a.master_id);
  assert.equal((await cdp.call(idn2, 'GetIdentities', { master_id: b.master_id })).master_id, a.master_id);

  // Later events by the loser's identifier alone land on the survivor.
  const later = cdp.trackEvent({ id: `mg-${run}-later`, event: 'Product Viewed', ids: [phone] });
  assert.equal((await cdp.call(ing, 'Track', later)).status, 'EVENT_STATUS_ACCEPTED');
  const final = await waitTotal(email, 7);
  assert.deepEqual(cdp.counts(final), { 'Order Completed': 3, 'Product Viewed': 3, identify: 1 });
  assert.equal(final.revenue, 60);
});
