#!/usr/bin/env node
// crash_load.js: the load generator of tests/integration/test_crash.sh.
//
// Workers send Ingest batches of new events for a fixed set of people,
// continuously, while the test kills and restarts services and Redis. A
// batch that fails (UNAVAILABLE, DEADLINE_EXCEEDED, anything) is sent again
// with the SAME message ids until ingestion answers it; dedup makes that
// safe. An event counts as acknowledged when ingestion answered ACCEPTED,
// or DUPLICATE for a batch whose earlier attempt failed (that attempt had
// made it durable). A DUPLICATE on a first attempt or a REJECTED result is
// recorded as an anomaly (ids are unique and events valid).
//
// On SIGTERM (or after CRASH_MAX_S) it stops starting batches, finishes the
// ones in flight (retrying for at most CRASH_FINISH_S), writes the summary
// to CRASH_OUT and exits 0; unresolved batches are reported there.
//
//   CDP_TEST_INGESTION_ADDR, CDP_TEST_RUN_ID
//   CRASH_OUT       summary JSON: per-person expected counts, figures
//   CRASH_PROGRESS  rewritten every PROGRESS_MS: "<acked> <failed attempts>"
//   CRASH_PEOPLE (30), CRASH_BATCH (50), CRASH_WORKERS (3),
//   CRASH_RATE (events/s, 600), CRASH_MAX_S (240), CRASH_FINISH_S (90)
'use strict';

const fs = require('fs');
const cdp = require('../lib/cdp');

const num = (name, def) => Number(process.env[name] || def);
const PEOPLE = num('CRASH_PEOPLE', 30);
const BATCH = num('CRASH_BATCH', 50);
const WORKERS = num('CRASH_WORKERS', 3);
const RATE = num('CRASH_RATE', 600);
const MAX_S = num('CRASH_MAX_S', 240);
const FINISH_S = num('CRASH_FINISH_S', 90);
const NAMES = ['Page Viewed', 'Added to Cart', 'Order Completed'];
const DEADLINE_MS = 3000;
const RETRY_BACKOFF_MS = 100;
const PROGRESS_MS = 200;

const run = cdp.runId();
const out = cdp.env('CRASH_OUT');
const progressFile = cdp.env('CRASH_PROGRESS');
const ing = cdp.client('ingestion', cdp.env('CDP_TEST_INGESTION_ADDR'));
const random = cdp.rng(Date.now() & 0xffffffff);

const acked = new Set();
const expected = Array.from({ length: PEOPLE }, () => ({}));
const figures = {
  accepted: 0, duplicateAfterRetry: 0, failedAttempts: 0, errors: {},
  anomalies: [], unresolvedBatches: 0, unresolvedEvents: 0, batches: 0,
};
let seq = 0;
let stopping = false;
let finishBy = Infinity;
const startedAt = Date.now();

// makeBatch() -> [{ person, name, event }]: BATCH new events.
function makeBatch() {
  const items = [];
  for (let i = 0; i < BATCH; i++) {
    const person = Math.floor(random() * PEOPLE);
    const name = NAMES[Math.floor(random() * NAMES.length)];
    const id = `crash-${run}-${seq++}`;
    const properties = name === 'Order Completed' ? { revenue: 1 } : { n: seq };
    const event = cdp.trackEvent({
      id, event: name, ids: [cdp.ident('user_id', `crash-${run}-${person}`)], properties,
    });
    items.push({ person, name, event });
  }
  return items;
}

// record(items, results, retried): books the answer of an Ingest call.
function record(items, results, retried) {
  results.forEach((r, i) => {
    const it = items[i];
    const ok = r.status === 'EVENT_STATUS_ACCEPTED' || (r.status === 'EVENT_STATUS_DUPLICATE' && retried);
    if (!ok) {
      figures.anomalies.push({ message_id: it.event.message_id, status: r.status, field: r.field, error: r.error });
      return;
    }
    if (r.status === 'EVENT_STATUS_ACCEPTED') figures.accepted++;
    else figures.duplicateAfterRetry++;
    if (acked.has(it.event.message_id)) return;
    acked.add(it.event.message_id);
    expected[it.person][it.name] = (expected[it.person][it.name] || 0) + 1;
  });
  if (results.length !== items.length) {
    figures.anomalies.push({ batch: figures.batches, results: results.length, sent: items.length });
  }
}

// sendUntilAnswered(items): Ingest with retries of the same batch. Returns
// true once answered, false if the finishing time ran out.
async function sendUntilAnswered(items) {
  const events = items.map((it) => it.event);
  let retried = false;
  for (;;) {
    try {
      const r = await cdp.call(ing, 'Ingest', { events }, DEADLINE_MS);
      record(items, r.results, retried);
      return true;
    } catch (err) {
      figures.failedAttempts++;
      figures.errors[err.code] = (figures.errors[err.code] || 0) + 1;
      retried = true;
      if (Date.now() > finishBy) return false;
      await cdp.sleep(RETRY_BACKOFF_MS);
    }
  }
}

async function worker() {
  const pauseMs = (1000 * BATCH * WORKERS) / RATE;
  while (!stopping) {
    const began = Date.now();
    const items = makeBatch();
    figures.batches++;
    if (!(await sendUntilAnswered(items))) {
      figures.unresolvedBatches++;
      figures.unresolvedEvents += items.length;
    }
    const left = pauseMs - (Date.now() - began);
    if (left > 0 && !stopping) await cdp.sleep(left);
  }
}

function writeProgress() {
  fs.writeFileSync(`${progressFile}.tmp`, `${acked.size} ${figures.failedAttempts}\n`);
  fs.renameSync(`${progressFile}.tmp`, progressFile);
}

function stop() {
  if (stopping) return;
  stopping = true;
  finishBy = Date.now() + FINISH_S * 1000;
}

async function main() {
  process.on('SIGTERM', stop);
  const ticker = setInterval(writeProgress, PROGRESS_MS);
  const limit = setTimeout(stop, MAX_S * 1000);
  await Promise.all(Array.from({ length: WORKERS }, worker));
  clearInterval(ticker);
  clearTimeout(limit);
  writeProgress();
  const summary = {
    run, people: PEOPLE, acked: acked.size, expected, figures,
    loadSeconds: (Date.now() - startedAt) / 1000,
  };
  fs.writeFileSync(out, JSON.stringify(summary));
  ing.close();
}

main();
