// seg_util.js: helpers shared by the segmentation scenarios (seg_*.js) run
// by tests/integration/test_segmentation.sh: clients from the environment,
// profile writes through the REAL profile service (ApplyEvents with
// ResolvedEvents built here), Evaluate touches, WatchSegment collection and
// a direct read of the change stream (redis-cli XRANGE) for exact counts.
//
// Environment: CDP_TEST_SEGMENTATION_ADDR, CDP_TEST_PROFILE_ADDR,
// CDP_TEST_INGESTION_ADDR, CDP_TEST_IDENTITY_ADDR, CDP_TEST_REDIS_PORT,
// CDP_TEST_CLOCK_FILE, CDP_TEST_RUN_ID.
'use strict';

const fs = require('fs');
const { execFileSync } = require('child_process');
const assert = require('node:assert/strict');
const cdp = require('../lib/cdp');

const DAY_MS = 86400000;
const WAIT_MS = 20000;

const run = cdp.runId().replace(/[^A-Za-z0-9_.-]/g, '_');

function clients() {
  return {
    seg: cdp.client('segmentation', cdp.env('CDP_TEST_SEGMENTATION_ADDR')),
    prf: cdp.client('profile', cdp.env('CDP_TEST_PROFILE_ADDR')),
    ing: process.env.CDP_TEST_INGESTION_ADDR
      ? cdp.client('ingestion', process.env.CDP_TEST_INGESTION_ADDR) : null,
    idn: process.env.CDP_TEST_IDENTITY_ADDR
      ? cdp.client('identity', process.env.CDP_TEST_IDENTITY_ADDR) : null,
  };
}

function closeAll(c) {
  for (const v of Object.values(c)) if (v) v.close();
}

let seq = 0;
const mid = (tag) => `seg-${run}-${tag}-${seq++}`;

// apply(prf, master, events): ApplyEvents of ResolvedEvents for one master
// id (identifiers: a user_id derived from the master id).
async function apply(prf, master, events) {
  const req = {
    events: events.map((event) => ({
      event, master_id: master, identifiers: [cdp.ident('user_id', `u-${master}`)],
    })),
  };
  const r = await cdp.call(prf, 'ApplyEvents', req);
  assert.equal(r.applied + r.duplicates, events.length, 'ApplyEvents applied every event');
  return r;
}

function traitsEvent(traits, tsMs = Date.now()) {
  return cdp.identifyEvent({ id: mid('id'), traits, tsMs });
}

function track(name, { tsMs = Date.now(), revenue, channel = '' } = {}) {
  return cdp.trackEvent({
    id: mid('tr'), event: name, properties: revenue !== undefined ? { revenue } : undefined,
    channel, tsMs,
  });
}

// touch(master, {events, traits, channels, revenue, merged_ids}): a ProfileTouch.
function touch(master, t = {}) {
  return {
    master_id: master, events: t.events || [], traits: t.traits || [],
    channels: t.channels || [], revenue: !!t.revenue, merged_ids: t.merged_ids || [],
    message_id: t.message_id || mid('touch'),
  };
}

const evaluate = (seg, touches) => cdp.call(seg, 'Evaluate', { profiles: touches }, 10000);

async function memberships(seg, master, includeExited = true) {
  const r = await cdp.call(seg, 'GetMemberships', { master_id: master, include_exited: includeExited });
  const out = {};
  for (const m of r.memberships) out[m.segment_id] = m;
  return out;
}

async function isMember(seg, segId, master) {
  const m = (await memberships(seg, master))[segId];
  return !!(m && m.member);
}

async function createSegment(seg, id, rule, name = id || "generated") {
  return cdp.call(seg, 'CreateSegment', { id, name, rule });
}

// backfillDone(seg, id, version) -> the DONE BackfillStatus of that version.
async function backfillDone(seg, id, version) {
  return cdp.waitFor(`backfill of ${id} v${version} DONE`, async () => {
    const b = await cdp.call(seg, 'GetBackfill', { segment_id: id });
    return b.state === 'BACKFILL_STATE_DONE' && Number(b.version) === version ? b : null;
  }, WAIT_MS);
}

// allMembers(seg, id, pageSize) -> { ids, pages }: every page of ListMembers.
async function allMembers(seg, id, pageSize) {
  const ids = [];
  const pages = [];
  let token = '';
  for (let i = 0; i < 1000; i++) {
    const r = await cdp.call(seg, 'ListMembers', { segment_id: id, page_size: pageSize, page_token: token });
    pages.push(r);
    ids.push(...r.members.map((m) => m.master_id));
    token = r.next_page_token;
    if (!token) return { ids, pages };
  }
  throw new Error('ListMembers never ended');
}

// watch(seg, segId, after) -> { changes, ended, cancel }: a WatchSegment
// stream collecting what it receives.
function watch(seg, segId, after) {
  const w = { changes: [], error: null, ended: false };
  w.call = seg.WatchSegment({ segment_id: segId, after });
  w.call.on('data', (c) => w.changes.push(c));
  w.call.on('error', (e) => { w.error = e; w.ended = true; });
  w.call.on('end', () => { w.ended = true; });
  w.cancel = () => { try { w.call.cancel(); } catch (_) { /* already ended */ } };
  w.waitCount = (n, what) => cdp.waitFor(what || `${n} changes on the watch of ${segId}`,
    () => (w.error ? Promise.reject(w.error) : w.changes.length >= n), WAIT_MS, 20);
  return w;
}

// streamEntries(): every entry of the change stream, read directly with
// XRANGE: [{ id, cid, seg, m, kind, at, ev, mid }].
function streamEntries() {
  const out = execFileSync('redis-cli', ['-p', cdp.env('CDP_TEST_REDIS_PORT'), '--no-raw', 'XRANGE',
    'cdp:seg:{changes}:log', '-', '+'], { maxBuffer: 1 << 28 }).toString();
  // --no-raw prints nested arrays with quoted strings; parse the quoted
  // tokens in order: id, then field/value pairs (7 pairs per entry).
  const toks = [...out.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]}"`));
  const entries = [];
  for (let i = 0; i < toks.length;) {
    const e = { id: toks[i++] };
    for (let k = 0; k < 7; k++) e[toks[i++]] = toks[i++];
    entries.push(e);
  }
  return entries;
}

// redis(...args) -> the raw reply text of one redis-cli command.
function redis(...args) {
  return execFileSync('redis-cli', ['-p', cdp.env('CDP_TEST_REDIS_PORT'), '--raw', ...args]).toString().trim();
}

function setClockOffset(ms) {
  fs.writeFileSync(cdp.env('CDP_TEST_CLOCK_FILE'), `${ms}\n`);
}

module.exports = {
  DAY_MS, WAIT_MS, run, clients, closeAll, mid, apply, traitsEvent, track, touch, evaluate,
  memberships, isMember, createSegment, backfillDone, allMembers, watch, streamEntries,
  redis, setClockOffset,
};
