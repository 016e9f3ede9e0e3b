#!/usr/bin/env node
// seg_crash.js: Evaluate-heavy load for the crash part of
// tests/integration/test_segmentation.sh, in three phases (CDP_TEST_PHASE):
//
//   setup   three segments over count("Hit") - one entered early, one late,
//           one entered and then exited (a band) - and PEOPLE profiles that
//           start with 0..24 hits (through the real profile service);
//   load    ROUNDS rounds: one ApplyEvents with a Hit for everyone, then
//           Evaluate in batches of BATCH touches, CONCURRENCY at a time;
//           every Evaluate is retried (same touches) until it answers OK,
//           as the pipeline does, while the test SIGKILLs segmentation;
//           SEG_CRASH_PROGRESS gets the number of answered calls;
//   verify  the change stream holds, per (segment, master), exactly the
//           transitions the final counts imply (entered once; entered then
//           exited for the band), change ids are unique, the member indexes
//           and GetMemberships agree, and no pending transition is left.
'use strict';

const fs = require('fs');
const assert = require('node:assert/strict');
const { execFileSync } = require('child_process');
const cdp = require('../lib/cdp');
const u = require('./seg_util');

const PEOPLE = 50;
const ROUNDS = 80;
const BATCH = 5;
const CONCURRENCY = 10;
const RETRY_MS = 50;
const RETRY_FOR_MS = 30000;

const run = u.run;
const SEGS = {
  early: { id: `crash-early-${run}`.slice(0, 64), rule: 'count("Hit") >= 20', kinds: ['entered'] },
  late: { id: `crash-late-${run}`.slice(0, 64), rule: 'count("Hit") >= 40', kinds: ['entered'] },
  band: {
    id: `crash-band-${run}`.slice(0, 64), rule: 'count("Hit") >= 30 and count("Hit") < 50',
    kinds: ['entered', 'exited'],
  },
};
const master = (i) => `m-${run}-k${String(i).padStart(3, '0')}`;
const hit = (i, tag) => ({
  event: cdp.trackEvent({ id: `seg-${run}-hit-${i}-${tag}`, event: 'Hit', tsMs: Date.now() }),
  master_id: master(i),
  identifiers: [cdp.ident('user_id', `u-${master(i)}`)],
});

async function retry(what, fn) {
  const until = Date.now() + RETRY_FOR_MS;
  let failures = 0;
  for (;;) {
    try {
      return { value: await fn(), failures };
    } catch (err) {
      failures++;
      if (Date.now() > until) throw new Error(`${what}: still failing: ${err.code} ${err.details}`);
      await cdp.sleep(RETRY_MS);
    }
  }
}

async function setup(c) {
  for (const s of Object.values(SEGS)) await u.createSegment(c.seg, s.id, s.rule);
  for (const s of Object.values(SEGS)) await u.backfillDone(c.seg, s.id, 1);
  const events = [];
  for (let i = 0; i < PEOPLE; i++) for (let k = 0; k < i % 25; k++) events.push(hit(i, `pre${k}`));
  const r = await cdp.call(c.prf, 'ApplyEvents', { events }, 20000);
  assert.equal(r.applied, events.length);
}

async function load(c) {
  const progress = cdp.env('SEG_CRASH_PROGRESS');
  let answered = 0;
  let failures = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const events = Array.from({ length: PEOPLE }, (_, i) => hit(i, `r${round}`));
    await retry('ApplyEvents', () => cdp.call(c.prf, 'ApplyEvents', { events }, 5000));
    const batches = [];
    for (let i = 0; i < PEOPLE; i += BATCH) {
      batches.push(Array.from({ length: BATCH }, (_, k) => u.touch(master(i + k), {
        events: ['Hit'], message_id: `seg-${run}-hit-${i + k}-r${round}`,
      })));
    }
    for (let b = 0; b < batches.length; b += CONCURRENCY) {
      const rs = await Promise.all(batches.slice(b, b + CONCURRENCY).map((t) =>
        retry('Evaluate', () => cdp.call(c.seg, 'Evaluate', { profiles: t }, 3000))));
      for (const r of rs) failures += r.failures;
      answered += rs.length;
      fs.writeFileSync(`${progress}.tmp`, String(answered));
      fs.renameSync(`${progress}.tmp`, progress); // never seen half written
    }
  }
  fs.writeFileSync(cdp.env('SEG_CRASH_OUT'), JSON.stringify({ answered, failures }));
  console.log(`seg_crash: ${answered} Evaluate calls answered, ${failures} failed attempts retried`);
}

async function verify(c) {
  const summary = JSON.parse(fs.readFileSync(cdp.env('SEG_CRASH_OUT')));
  assert.ok(summary.failures > 0, 'the kills must have failed some Evaluate calls');
  const entries = u.streamEntries();
  const cids = entries.filter((e) => e.seg.startsWith('crash-')).map((e) => e.cid);
  const dupCids = cids.filter((x, i) => cids.indexOf(x) !== i);
  const problems = [];
  if (dupCids.length) problems.push(`duplicated change ids: ${[...new Set(dupCids)].slice(0, 5)}`);
  for (const s of Object.values(SEGS)) {
    const per = new Map();
    for (const e of entries.filter((x) => x.seg === s.id)) {
      if (!per.has(e.m)) per.set(e.m, []);
      per.get(e.m).push(e.kind);
    }
    for (let i = 0; i < PEOPLE; i++) {
      const got = per.get(master(i)) || [];
      if (JSON.stringify(got) !== JSON.stringify(s.kinds)) {
        problems.push(`${s.id} ${master(i)}: ${JSON.stringify(got)}, want ${JSON.stringify(s.kinds)}`);
      }
    }
    const { ids } = await u.allMembers(c.seg, s.id, 1000);
    const want = s.kinds.length === 1 ? PEOPLE : 0;
    if (ids.length !== want) problems.push(`${s.id}: ${ids.length} members, want ${want}`);
  }
  for (let i = 0; i < PEOPLE; i += 7) {
    const m = await u.memberships(c.seg, master(i));
    assert.equal(m[SEGS.early.id].member, true);
    assert.equal(m[SEGS.late.id].member, true);
    assert.equal(m[SEGS.band.id].member, false);
  }
  const port = cdp.env('CDP_TEST_REDIS_PORT');
  const pending = execFileSync('redis-cli', ['-p', port, '--scan', '--pattern', `cdp:seg:{p:m-${run}-k*}:pending`])
    .toString().trim();
  if (pending) problems.push(`pending transitions left: ${pending.split('\n').length}`);
  console.log(`seg_crash verify: ${cids.length} transitions checked, ${problems.length} problems`);
  assert.deepEqual(problems, []);
}

async function main() {
  const c = u.clients();
  try {
    const phase = cdp.env('CDP_TEST_PHASE');
    if (phase === 'setup') await setup(c);
    else if (phase === 'load') await load(c);
    else if (phase === 'verify') await verify(c);
    else throw new Error(`unknown phase ${phase}`);
  } finally {
    u.closeAll(c);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
