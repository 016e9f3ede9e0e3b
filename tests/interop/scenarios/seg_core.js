// seg_core.js: the segmentation service against the real profile, identity
// and ingestion services on a private Redis, run (node --test, tests in
// order) by tests/integration/test_segmentation.sh:
//
//   - CRUD and its errors (positioned syntax error, bad ids, ALREADY_EXISTS,
//     NOT_FOUND, paging, update bumps the version and re-backfills, delete);
//   - Evaluate: entered, GetMemberships by master id and by identifier, a
//     replay records nothing twice, a trait change exits with exited_at,
//     only the segments a touch can affect are evaluated;
//   - ListMembers over 3 pages, WatchSegment live / resumed / from "0";
//   - backfill of a new segment over known profiles;
//   - a merge through ingestion ends the loser's memberships;
//   - time: windowed counts and "within" exits by the test clock
//     (CDP_CLOCK_OFFSET_FILE), with no new event.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const cdp = require('../lib/cdp');
const u = require('./seg_util');

const { run, DAY_MS, WAIT_MS } = u;
const S = (name) => `${name}-${run}`.slice(0, 64);
let c;

test.before(() => { c = u.clients(); });
test.after(() => u.closeAll(c));

const code = async (p) => (await p).code;
const statusOf = (method, req) => cdp.callStatus(c.seg, method, req);

test('CRUD and errors', async () => {
  const v = await cdp.call(c.seg, 'ValidateRule', { rule: 'trait.plan = "pro" and count("Order Completed", 30d) >= 2' });
  assert.deepEqual([...v.reads].sort(), ['event:Order Completed', 'trait:plan']);
  assert.equal(v.time_based, true);

  const bad = await statusOf('CreateSegment', { id: S('bad'), name: 'x', rule: 'trait.plan = ' });
  assert.equal(bad.code, cdp.status.INVALID_ARGUMENT);
  assert.match(bad.details, /^segment\.rule: line 1, column 1[34]: /, bad.details);
  const bad2 = await statusOf('ValidateRule', { rule: 'trait.plan = "a" and\n  count("X") >> 2' });
  assert.equal(bad2.code, cdp.status.INVALID_ARGUMENT);
  assert.match(bad2.details, /^rule: line 2, column \d+: /, bad2.details);

  for (const id of ['bad id', 'x'.repeat(65), 'a/b']) {
    const r = await statusOf('CreateSegment', { id, name: 'n', rule: 'true' });
    assert.equal(r.code, cdp.status.INVALID_ARGUMENT, id);
    assert.match(r.details, /^segment\.id: /);
  }
  assert.equal(await code(statusOf('CreateSegment', { id: S('noname'), name: '', rule: 'true' })),
    cdp.status.INVALID_ARGUMENT);
  assert.equal(await code(statusOf('CreateSegment', { id: S('norule'), name: 'n', rule: '' })),
    cdp.status.INVALID_ARGUMENT);

  const id = S('crud');
  const s1 = await u.createSegment(c.seg, id, 'trait.plan = "pro"', 'Pro');
  assert.equal(s1.id, id);
  assert.equal(Number(s1.version), 1);
  assert.equal(s1.canonical_rule.length > 0, true);
  assert.deepEqual(s1.reads, ['trait:plan']);
  assert.equal(s1.time_based, false);
  const dup = await statusOf('CreateSegment', { id, name: 'again', rule: 'true' });
  assert.equal(dup.code, cdp.status.ALREADY_EXISTS);

  const gen = await u.createSegment(c.seg, '', 'trait.plan exists');
  assert.match(gen.id, /^seg_[0-9a-f]{16}$/);

  for (const [m, req] of [['GetSegment', { id: S('nope') }], ['UpdateSegment', { id: S('nope'), rule: 'true' }],
    ['DeleteSegment', { id: S('nope') }], ['GetBackfill', { segment_id: S('nope') }],
    ['ListMembers', { segment_id: S('nope') }]]) {
    assert.equal(await code(statusOf(m, req)), cdp.status.NOT_FOUND, m);
  }
  assert.equal(await code(statusOf('GetSegment', { id: 'bad id' })), cdp.status.INVALID_ARGUMENT);
  assert.equal(await code(statusOf('ListMembers', { segment_id: id, page_size: 5000 })),
    cdp.status.INVALID_ARGUMENT);
  const gm = await statusOf('GetMemberships', {});
  assert.equal(gm.code, cdp.status.INVALID_ARGUMENT);
  const ev = await statusOf('Evaluate', { profiles: [{ master_id: '' }] });
  assert.equal(ev.code, cdp.status.INVALID_ARGUMENT);
  assert.match(ev.details, /profiles\[0\]\.master_id/);
  const wbad = await new Promise((resolve) => {
    const call = c.seg.WatchSegment({ after: 'not-a-cursor' });
    call.on('data', () => {});
    call.on('error', (e) => resolve(e));
    call.on('end', () => resolve(null));
  });
  assert.equal(wbad && wbad.code, cdp.status.INVALID_ARGUMENT);
  const wnf = await new Promise((resolve) => {
    const call = c.seg.WatchSegment({ segment_id: S('nope'), after: '0' });
    call.on('data', () => {});
    call.on('error', (e) => resolve(e));
    call.on('end', () => resolve(null));
  });
  assert.equal(wnf && wnf.code, cdp.status.NOT_FOUND);

  await u.backfillDone(c.seg, id, 1);
  const upd = await cdp.call(c.seg, 'UpdateSegment', { id, name: 'Pro+', rule: 'trait.plan in ["pro", "team"]' });
  assert.equal(Number(upd.version), 2);
  assert.equal(upd.name, 'Pro+');
  assert.match(upd.canonical_rule, /team/);
  assert.ok(Number(upd.updated_at.seconds) >= Number(upd.created_at.seconds));
  const bf2 = await u.backfillDone(c.seg, id, 2);
  assert.equal(Number(bf2.version), 2);
  // a name-only update keeps the rule
  const upd3 = await cdp.call(c.seg, 'UpdateSegment', { id, name: 'Pro3' });
  assert.equal(Number(upd3.version), 3);
  assert.equal(upd3.rule, 'trait.plan in ["pro", "team"]');
  assert.equal(upd3.name, 'Pro3');
  await u.backfillDone(c.seg, id, 3);
  const badUpd = await statusOf('UpdateSegment', { id, rule: 'trait.' });
  assert.equal(badUpd.code, cdp.status.INVALID_ARGUMENT);
  assert.equal(Number((await cdp.call(c.seg, 'GetSegment', { id })).version), 3, 'a refused update changes nothing');

  // list paging: page_size 1 walks every segment exactly once, in id order
  const seen = [];
  let token = '';
  do {
    const r = await cdp.call(c.seg, 'ListSegments', { page_size: 1, page_token: token });
    assert.ok(r.segments.length <= 1);
    seen.push(...r.segments.map((s) => s.id));
    token = r.next_page_token;
  } while (token);
  assert.ok(seen.includes(id) && seen.includes(gen.id));
  assert.deepEqual(seen, [...new Set(seen)].sort());

  const del = await cdp.call(c.seg, 'DeleteSegment', { id: gen.id });
  assert.equal(del.deleted, true);
  assert.equal(await code(statusOf('GetSegment', { id: gen.id })), cdp.status.NOT_FOUND);
  assert.equal(await code(statusOf('DeleteSegment', { id: gen.id })), cdp.status.NOT_FOUND);
  await cdp.call(c.seg, 'DeleteSegment', { id });
});

// Segments of the evaluation tests (created before any profile exists).
const SEG = {
  pro: S('pro'),        // trait:plan
  buy: S('buy'),        // event:Order Completed
  recent: S('recent'),  // last_seen (time based)
  win: S('win'),        // event:Visit, windowed (time based)
};
const A = `m-${run}-a`;

test('Evaluate, memberships, replay, exit, affected segments only', async () => {
  await u.createSegment(c.seg, SEG.pro, 'trait.plan = "pro"');
  await u.createSegment(c.seg, SEG.buy, 'count("Order Completed") >= 1');
  await u.createSegment(c.seg, SEG.recent, 'last_seen within 7d');
  await u.createSegment(c.seg, SEG.win, 'count("Visit", 30d) >= 2');
  for (const id of Object.values(SEG)) await u.backfillDone(c.seg, id, 1);

  await u.apply(c.prf, A, [u.traitsEvent({ plan: 'pro' })]);
  const t1 = u.touch(A, { events: ['identify'], traits: ['plan'] });
  const r1 = await u.evaluate(c.seg, [t1]);
  // a profile never seen is evaluated against every segment
  assert.equal(r1.profiles, 1);
  assert.ok(r1.evaluations >= 4, `evaluations ${r1.evaluations}`);
  assert.equal(r1.entered, 2, 'pro and recent');
  const m1 = await u.memberships(c.seg, A, false);
  assert.deepEqual(Object.keys(m1).filter((k) => Object.values(SEG).includes(k)).sort(),
    [SEG.pro, SEG.recent].sort());
  assert.equal(m1[SEG.pro].member, true);
  assert.ok(m1[SEG.pro].entered_at && Math.abs(Number(m1[SEG.pro].entered_at.seconds) * 1000 - Date.now()) < 60000);
  assert.equal(m1[SEG.pro].exited_at, null);

  // replay: nothing new, and exactly one entered in the change stream
  const r2 = await u.evaluate(c.seg, [t1]);
  assert.equal(r2.entered + r2.exited, 0);
  const mine = () => u.streamEntries().filter((e) => e.m === A && e.seg === SEG.pro);
  assert.deepEqual(mine().map((e) => e.kind), ['entered']);
  assert.equal(mine()[0].cid, `${SEG.pro}:${A}:1`);
  assert.deepEqual(JSON.parse(mine()[0].ev), ['identify']);
  assert.equal(mine()[0].mid, t1.message_id);

  // the same profile twice in one call (two concurrent evaluations): one transition
  const B = `m-${run}-b`;
  await u.apply(c.prf, B, [u.traitsEvent({ plan: 'pro' })]);
  const tb = u.touch(B, { events: ['identify'], traits: ['plan'] });
  const rb = await u.evaluate(c.seg, [tb, tb, tb]);
  assert.equal(rb.entered, 2, 'pro and recent, once');
  const bEntries = u.streamEntries().filter((e) => e.m === B);
  assert.deepEqual(bEntries.map((e) => e.seg).sort(), [SEG.pro, SEG.recent].sort());

  // only what the touch can affect (A is known now)
  const only = async (t) => (await u.evaluate(c.seg, [u.touch(A, t)])).evaluations;
  assert.equal(await only({ traits: ['plan'] }), 1);
  assert.equal(await only({ traits: ['other'] }), 0);
  assert.equal(await only({ channels: ['sms'] }), 0);
  assert.equal(await only({ events: ['Order Completed'] }), 2, 'buy + recent (any event)');
  assert.equal(await only({ events: ['Visit'] }), 2, 'win + recent');
  assert.equal(await only({ events: ['Visit'], traits: ['plan'] }), 3);

  // a trait change: exited, with exited_at
  await u.apply(c.prf, A, [u.traitsEvent({ plan: 'free' })]);
  const r3 = await u.evaluate(c.seg, [u.touch(A, { events: ['identify'], traits: ['plan'] })]);
  assert.equal(r3.exited, 1);
  assert.equal(r3.entered, 0);
  const m3 = await u.memberships(c.seg, A);
  assert.equal(m3[SEG.pro].member, false);
  assert.ok(m3[SEG.pro].exited_at, 'exited_at set');
  assert.ok(Number(m3[SEG.pro].exited_at.seconds) >= Number(m3[SEG.pro].entered_at.seconds));
  assert.equal((await u.memberships(c.seg, A, false))[SEG.pro], undefined, 'hidden without include_exited');
  assert.deepEqual(mine().map((e) => e.kind), ['entered', 'exited']);
  assert.equal(mine()[1].cid, `${SEG.pro}:${A}:2`);

  // and back in: entered again, exited_at cleared
  await u.apply(c.prf, A, [u.traitsEvent({ plan: 'pro' }), u.track('Order Completed', { revenue: 5 })]);
  const r4 = await u.evaluate(c.seg, [u.touch(A, { events: ['identify', 'Order Completed'], traits: ['plan'], revenue: true })]);
  assert.equal(r4.entered, 2, 'pro again + buy');
  const m4 = await u.memberships(c.seg, A);
  assert.equal(m4[SEG.pro].member, true);
  assert.equal(m4[SEG.pro].exited_at, null);
  assert.equal(m4[SEG.buy].member, true);
});

test('a segment re-created with the same id is a new incarnation', async () => {
  const id = S('re');
  await u.createSegment(c.seg, id, 'trait.plan = "pro"');
  await u.backfillDone(c.seg, id, 1);
  assert.equal(await u.isMember(c.seg, id, A), true, 'A entered by backfill');
  await cdp.call(c.seg, 'DeleteSegment', { id });
  // the next evaluation of A forgets the deleted segment's state (lazily)
  const memKey = `cdp:seg:{p:${A}}:mem`;
  await cdp.waitFor('deleted membership dropped', async () => {
    await u.evaluate(c.seg, [u.touch(A, { traits: ['plan'] })]);
    return u.redis('HGET', memKey, id) === '0:0:0:1:0';
  }, WAIT_MS);
  assert.equal((await u.memberships(c.seg, A))[id], undefined);
  await u.createSegment(c.seg, id, 'trait.plan = "pro"');
  await u.backfillDone(c.seg, id, 1);
  assert.equal(await u.isMember(c.seg, id, A), true, 'A entered the new incarnation');
  const { ids } = await u.allMembers(c.seg, id, 100);
  assert.ok(ids.includes(A));
  const e = u.streamEntries().filter((x) => x.seg === id && x.m === A);
  assert.deepEqual(e.map((x) => x.kind), ['entered', 'entered']);
  assert.deepEqual(e.map((x) => x.cid), [`${id}:${A}:1`, `${id}:${A}:2`], 'change ids are never reused');
  await cdp.call(c.seg, 'DeleteSegment', { id });
});

test('GetMemberships by identifier (through ingestion and identity)', async () => {
  const email = `seg.${run}.id@example.com`;
  const r = await cdp.call(c.ing, 'Ingest', {
    events: [cdp.identifyEvent({ id: u.mid('ing'), ids: [cdp.ident('email', email)], traits: { plan: 'pro' } })],
  });
  assert.equal(r.accepted, 1);
  const got = await cdp.waitFor('membership by identifier', async () => {
    const m = await cdp.call(c.seg, 'GetMemberships', { identifier: cdp.ident('email', email) });
    return m.memberships.some((x) => x.segment_id === SEG.pro && x.member) ? m : null;
  }, WAIT_MS);
  const lk = await cdp.call(c.idn, 'Lookup', { identifier: cdp.ident('email', email) });
  assert.equal(got.master_id, lk.master_id);
  const nf = await statusOf('GetMemberships', { identifier: cdp.ident('email', `nobody.${run}@example.com`) });
  assert.equal(nf.code, cdp.status.NOT_FOUND);
});

const COHORT = 25;
const cohortMaster = (i) => `m-${run}-c${String(i).padStart(2, '0')}`;

test('ListMembers pages, WatchSegment live, resumed and from 0', async () => {
  const id = S('cohort');
  await u.createSegment(c.seg, id, `trait.cohort = "${run}"`);
  await u.backfillDone(c.seg, id, 1);
  const live = u.watch(c.seg, id, '');
  // the live watch starts at the reader's position; let it attach first
  await cdp.waitFor('watcher attached', async () => {
    const m = await fetchMetric('cdp_segmentation_watchers');
    return m >= 1;
  }, WAIT_MS);
  for (let i = 0; i < COHORT; i++) await u.apply(c.prf, cohortMaster(i), [u.traitsEvent({ cohort: run })]);
  const touches = [];
  for (let i = 0; i < COHORT; i++) touches.push(u.touch(cohortMaster(i), { events: ['identify'], traits: ['cohort'] }));
  const r = await u.evaluate(c.seg, touches);
  assert.equal(r.profiles, COHORT);
  assert.ok(r.entered >= COHORT);

  const { ids, pages } = await u.allMembers(c.seg, id, 10);
  assert.deepEqual(pages.map((p) => p.members.length), [10, 10, 5]);
  assert.equal(Number(pages[0].total), COHORT);
  assert.equal(pages[2].next_page_token, '');
  const want = Array.from({ length: COHORT }, (_, i) => cohortMaster(i));
  assert.deepEqual(ids, want, 'every member once, in master id order');
  assert.ok(pages[0].members.every((m) => m.entered_at && Number(m.entered_at.seconds) > 0));

  await live.waitCount(COHORT);
  assert.deepEqual(live.changes.map((x) => x.master_id).sort(), want);
  assert.ok(live.changes.every((x) => x.kind === 'CHANGE_KIND_ENTERED' && x.segment_id === id));
  assert.deepEqual(live.changes[0].event_names, ['identify']);

  // 5 exits after the cursor of the 10th change
  const cursor = live.changes[9].cursor;
  for (let i = 0; i < 5; i++) await u.apply(c.prf, cohortMaster(i), [u.traitsEvent({ cohort: 'gone' })]);
  await u.evaluate(c.seg, want.slice(0, 5).map((m) => u.touch(m, { traits: ['cohort'] })));
  await live.waitCount(COHORT + 5);
  live.cancel();

  const resumed = u.watch(c.seg, id, cursor);
  await resumed.waitCount(COHORT - 10 + 5);
  const all = u.watch(c.seg, id, '0');
  await all.waitCount(COHORT + 5);
  // no more than that: the last entry of each is the last change
  const lastCid = live.changes[live.changes.length - 1].change_id;
  await cdp.waitFor('resumed and full watches at the last change', () =>
    resumed.changes[resumed.changes.length - 1].change_id === lastCid &&
    all.changes[all.changes.length - 1].change_id === lastCid, WAIT_MS);
  resumed.cancel();
  all.cancel();
  assert.deepEqual(resumed.changes.map((x) => x.change_id), live.changes.slice(10).map((x) => x.change_id));
  assert.deepEqual(all.changes.map((x) => x.change_id), live.changes.map((x) => x.change_id));
  assert.equal(all.changes.filter((x) => x.kind === 'CHANGE_KIND_EXITED').length, 5);
  const total = Number((await cdp.call(c.seg, 'ListMembers', { segment_id: id })).total);
  assert.equal(total, COHORT - 5);
});

test('backfill of a new segment over known profiles', async () => {
  const id = S('bf');
  const s = await u.createSegment(c.seg, id, `trait.cohort = "${run}"`);
  assert.ok(s.backfill, 'the created segment reports its backfill');
  const b = await u.backfillDone(c.seg, id, 1);
  assert.equal(Number(b.matched), COHORT - 5);
  assert.ok(Number(b.scanned) >= COHORT && Number(b.total) >= COHORT, JSON.stringify(b));
  assert.ok(b.started_at && b.finished_at);
  const { ids } = await u.allMembers(c.seg, id, 7);
  assert.deepEqual(ids, Array.from({ length: COHORT - 5 }, (_, i) => cohortMaster(i + 5)));
  const entries = u.streamEntries().filter((e) => e.seg === id);
  assert.equal(entries.length, COHORT - 5);
  assert.ok(entries.every((e) => e.kind === 'entered' && e.ev === '[]' && e.mid === ''));
  const est = await cdp.call(c.seg, 'EstimateSize', { segment_id: id });
  assert.equal(Number(est.estimate), COHORT - 5);
  assert.equal(est.exact, true);
  // an unsaved rule: a sample as large as the registry is the whole registry
  const er = await cdp.call(c.seg, 'EstimateSize', { rule: `trait.cohort = "${run}"`, sample_size: 10000 });
  assert.equal(er.exact, false);
  assert.equal(Number(er.sampled), Number(er.population), JSON.stringify(er));
  assert.equal(Number(er.matched), COHORT - 5);
  assert.equal(Number(er.estimate), COHORT - 5);
  const small = await cdp.call(c.seg, 'EstimateSize', { rule: 'true', sample_size: 5 });
  assert.ok(Number(small.sampled) >= 5 && Number(small.sampled) <= 5 + 16, JSON.stringify(small));
  assert.equal(Number(small.estimate), Number(small.population));
  const eb = await statusOf('EstimateSize', { rule: 'trait.x >' });
  assert.equal(eb.code, cdp.status.INVALID_ARGUMENT);
  assert.match(eb.details, /^rule: line 1, column \d+: /);
  // a rule change re-backfills: the members follow the new rule
  const upd = await cdp.call(c.seg, 'UpdateSegment', { id, rule: `trait.cohort = "${run}" and trait.plan = "none"` });
  assert.equal(Number(upd.version), 2);
  const b2 = await u.backfillDone(c.seg, id, 2);
  assert.equal(Number(b2.matched), 0);
  assert.equal(Number((await cdp.call(c.seg, 'ListMembers', { segment_id: id })).total), 0);
  await cdp.call(c.seg, 'DeleteSegment', { id });
});

test('a merged profile ends its memberships (through ingestion)', async () => {
  const ua = `seg-${run}-ua`;
  const eb = `seg.${run}.b@example.com`;
  const ing = async (ids, traits) => {
    const r = await cdp.call(c.ing, 'Ingest', { events: [cdp.identifyEvent({ id: u.mid('mg'), ids, traits })] });
    assert.equal(r.accepted, 1);
  };
  await ing([cdp.ident('user_id', ua)], { plan: 'pro' });
  const ma = await cdp.waitFor('profile a', () => cdp.call(c.idn, 'Lookup', { identifier: cdp.ident('user_id', ua) }), WAIT_MS);
  await ing([cdp.ident('email', eb)], { plan: 'pro' });
  const mb = await cdp.waitFor('profile b', () => cdp.call(c.idn, 'Lookup', { identifier: cdp.ident('email', eb) }), WAIT_MS);
  assert.notEqual(ma.master_id, mb.master_id);
  for (const m of [ma.master_id, mb.master_id]) {
    await cdp.waitFor(`${m} in pro`, () => u.isMember(c.seg, SEG.pro, m), WAIT_MS);
  }
  await ing([cdp.ident('user_id', ua), cdp.ident('email', eb)], { merged: true });
  const survivor = await cdp.waitFor('one master', async () => {
    const x = await cdp.call(c.idn, 'Lookup', { identifier: cdp.ident('user_id', ua) });
    const y = await cdp.call(c.idn, 'Lookup', { identifier: cdp.ident('email', eb) });
    return x.master_id === y.master_id ? x.master_id : null;
  }, WAIT_MS);
  const loser = survivor === ma.master_id ? mb.master_id : ma.master_id;
  await cdp.waitFor('loser out of pro', async () => !(await u.isMember(c.seg, SEG.pro, loser)), WAIT_MS);
  const lm = await u.memberships(c.seg, loser);
  assert.equal(lm[SEG.pro].member, false);
  assert.ok(lm[SEG.pro].exited_at);
  assert.equal(await u.isMember(c.seg, SEG.pro, survivor), true);
  const { ids } = await u.allMembers(c.seg, SEG.pro, 1000);
  assert.ok(ids.includes(survivor) && !ids.includes(loser));
  const kinds = u.streamEntries().filter((e) => e.seg === SEG.pro && e.m === loser).map((e) => e.kind);
  assert.deepEqual(kinds, ['entered', 'exited']);
});

test('time: windowed count and "within" change with the clock alone', async () => {
  const W = `m-${run}-w`;
  const now = Date.now();
  // two visits, 20 and 10 days ago (different days)
  await u.apply(c.prf, W, [u.track('Visit', { tsMs: now - 20 * DAY_MS }), u.track('Visit', { tsMs: now - 10 * DAY_MS })]);
  const r = await u.evaluate(c.seg, [u.touch(W, { events: ['Visit'] })]);
  assert.ok(r.entered >= 1);
  assert.equal(await u.isMember(c.seg, SEG.win, W), true, 'two visits in 30 days');
  assert.equal(await u.isMember(c.seg, SEG.recent, W), false, 'last seen 10 days ago');
  assert.equal(await u.isMember(c.seg, SEG.recent, A), true);

  // 9 days later the older visit is still in the window (re-evaluated explicitly)
  u.setClockOffset(9 * DAY_MS);
  await cdp.sleep(250); // the service re-reads the file at most every 100 ms
  await u.evaluate(c.seg, [u.touch(W, { events: ['Visit'] })]);
  assert.equal(await u.isMember(c.seg, SEG.win, W), true, 'day 9: still two visits in the window');
  // A's last_seen was today: 9 days later it left "within 7d" through the scheduler
  await cdp.waitFor('A out of recent (scheduler)', async () => !(await u.isMember(c.seg, SEG.recent, A)), WAIT_MS);
  const am = await u.memberships(c.seg, A);
  assert.ok(Number(am[SEG.recent].exited_at.seconds) * 1000 >= now + 7 * DAY_MS - 60000, 'exited on the test clock');

  // 10 days later the visit of day -20 left the window: exit without any event
  u.setClockOffset(10 * DAY_MS + 1000);
  await cdp.waitFor('W out of win (scheduler)', async () => !(await u.isMember(c.seg, SEG.win, W)), WAIT_MS);
  const e = u.streamEntries().filter((x) => x.seg === SEG.win && x.m === W);
  assert.deepEqual(e.map((x) => x.kind), ['entered', 'exited']);
  assert.equal(e[1].ev, '[]');
  assert.ok(Number(e[1].at) >= now + 10 * DAY_MS);
  u.setClockOffset(0);
});

// fetchMetric(name) -> the value of an unlabelled metric of segmentation.
async function fetchMetric(name) {
  const addr = cdp.env('CDP_TEST_SEGMENTATION_METRICS');
  const res = await fetch(`http://${addr}/metrics`);
  const text = await res.text();
  const m = text.match(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}
