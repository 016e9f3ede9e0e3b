#!/usr/bin/env node
// crash_verify.js SUMMARY.json: the verdict of tests/integration/test_crash.sh.
//
// Waits (at most CRASH_DRAIN_S, or until the totals stop moving for
// CRASH_STALL_S) until the pipeline has drained, that is until the profiles'
// total_events add up to the number of acknowledged events,
// then checks that every acknowledged event is reflected exactly once: the
// sum of total_events over all people equals the number of distinct
// acknowledged message ids, and each person's per-event-name counts equal
// what was acknowledged for them. Prints the figures, and on a mismatch the
// people that differ and the dead letters. Exits 0 when all holds.
//
//   CDP_TEST_INGESTION_ADDR, CDP_TEST_PROFILE_ADDR, CRASH_DRAIN_S (90),
//   CRASH_STALL_S (20), CRASH_LABEL (a word for the output lines)
'use strict';

const fs = require('fs');
const cdp = require('../lib/cdp');

const DRAIN_S = Number(process.env.CRASH_DRAIN_S || 90);
// The pipeline retries with backoff of a few seconds at most: totals that
// have not moved for this long, short of the acknowledged count, are stuck.
const STALL_S = Number(process.env.CRASH_STALL_S || 20);
const POLL_MS = 250;
const LABEL = process.env.CRASH_LABEL ? `crash (${process.env.CRASH_LABEL})` : 'crash';
const SHOW_PEOPLE = 10;

const summary = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const prf = cdp.client('profile', cdp.env('CDP_TEST_PROFILE_ADDR'));
const ing = cdp.client('ingestion', cdp.env('CDP_TEST_INGESTION_ADDR'));
const person = (p) => cdp.ident('user_id', `crash-${summary.run}-${p}`);
const sumOf = (o) => Object.values(o).reduce((a, b) => a + b, 0);

// snapshot() -> per person { total, counts } (zeros for no profile yet).
async function snapshot() {
  const views = await Promise.all(summary.expected.map((_, p) => cdp.getProfile(prf, person(p), 10000)));
  return views.map((v) => (v ? { total: Number(v.total_events), counts: cdp.counts(v) } : { total: 0, counts: {} }));
}

function sameCounts(a, b) {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if ((a[k] || 0) !== (b[k] || 0)) return false;
  return true;
}

async function main() {
  const f = summary.figures;
  console.log(`${LABEL}: ${summary.acked} events acknowledged over ${summary.loadSeconds}s ` +
    `(${f.accepted} ACCEPTED, ${f.duplicateAfterRetry} DUPLICATE on retry), ` +
    `${f.failedAttempts} failed attempts ${JSON.stringify(f.errors)}, ${f.batches} batches`);
  let ok = true;
  if (f.anomalies.length) {
    console.log(`FAIL: ${f.anomalies.length} anomalous results, e.g. ${JSON.stringify(f.anomalies.slice(0, 3))}`);
    ok = false;
  }
  if (f.unresolvedBatches) {
    console.log(`FAIL: ${f.unresolvedBatches} batches (${f.unresolvedEvents} events) never got an answer`);
    ok = false;
  }

  const started = Date.now();
  let snap = [];
  let total = -1;
  let movedAt = started;
  while (Date.now() - started < DRAIN_S * 1000 && Date.now() - movedAt < STALL_S * 1000) {
    try {
      snap = await snapshot();
      const now = snap.reduce((a, s) => a + s.total, 0);
      if (now !== total) movedAt = Date.now();
      total = now;
      if (total >= summary.acked) break;
    } catch (err) {
      console.log(`${LABEL}: GetProfile failed while draining: ${err.code} ${err.details || err.message}`);
    }
    await cdp.sleep(POLL_MS);
  }
  const drainMs = Date.now() - started;
  console.log(`${LABEL}: profiles hold ${total} events after ${drainMs} ms of draining ` +
    `(acknowledged: ${summary.acked})`);
  if (total !== summary.acked) {
    console.log(`FAIL: sum of total_events ${total} != acknowledged distinct message ids ${summary.acked}`);
    ok = false;
  }
  let wrong = 0;
  summary.expected.forEach((want, p) => {
    const got = snap[p] || { total: 0, counts: {} };
    if (got.total === sumOf(want) && sameCounts(got.counts, want)) return;
    if (wrong++ < SHOW_PEOPLE) {
      console.log(`  person ${p}: expected ${JSON.stringify(want)} got total ${got.total} ${JSON.stringify(got.counts)}`);
    }
  });
  if (wrong) {
    console.log(`FAIL: ${wrong} of ${summary.people} people differ from what was acknowledged for them`);
    ok = false;
  }
  if (!ok) {
    const dl = await cdp.callStatus(ing, 'ListDeadLetters', { page_size: 5 });
    console.log(`dead letters: ${dl.reply ? JSON.stringify(dl.reply.dead_letters.map(
      (d) => ({ message_id: d.message_id, reason: d.reason, attempts: d.attempts }))) : dl.details}`);
  }
  console.log(`${LABEL}: ${ok ? 'every acknowledged event is reflected exactly once' : 'FAILED'}`);
  prf.close();
  ing.close();
  process.exit(ok ? 0 : 1);
}

main();
