#!/usr/bin/env node
// seg_outage.js: segmentation while its Redis restarts, run in the
// background by tests/integration/test_segmentation.sh, which it talks to
// through files in SEG_OUTAGE_DIR (bounded polls on both sides):
//
//   1. opens a live WatchSegment on a new segment, writes `ready`;
//   2. once the test wrote `down` (Redis is stopped): Evaluate and
//      GetMemberships answer UNAVAILABLE (not INTERNAL, not a hang), writes
//      `checked`;
//   3. once the test wrote `up` (Redis is back, segmentation SERVING): an
//      Evaluate succeeds and its transition reaches the watcher opened
//      before the outage (the stream reader reconnected).
'use strict';

const fs = require('fs');
const path = require('path');
const assert = require('node:assert/strict');
const cdp = require('../lib/cdp');
const u = require('./seg_util');

const dir = cdp.env('SEG_OUTAGE_DIR');
const flag = (name) => path.join(dir, name);
const waitFlag = (name) => cdp.waitFor(`flag ${name}`, () => fs.existsSync(flag(name)), 60000);

async function main() {
  const c = u.clients();
  const id = `outage-${u.run}`.slice(0, 64);
  const M = `m-${u.run}-out`;
  try {
    await u.createSegment(c.seg, id, 'trait.outage = true');
    await u.backfillDone(c.seg, id, 1);
    await u.apply(c.prf, M, [u.traitsEvent({ outage: true })]);
    const live = u.watch(c.seg, id, '');
    // the watcher is live once a change made after it was opened reaches it
    let warm = 0;
    await cdp.waitFor('watcher live', async () => {
      const W = `m-${u.run}-out${warm++}`;
      await u.apply(c.prf, W, [u.traitsEvent({ outage: true })]);
      await u.evaluate(c.seg, [u.touch(W, { traits: ['outage'] })]);
      await cdp.sleep(100);
      return live.changes.length > 0;
    }, u.WAIT_MS, 0);
    const before = live.changes.length;
    fs.writeFileSync(flag('ready'), '');

    await waitFlag('down');
    const t = u.touch(M, { traits: ['outage'] });
    const ev = await cdp.callStatus(c.seg, 'Evaluate', { profiles: [t] }, 10000);
    assert.equal(ev.code, cdp.status.UNAVAILABLE, `Evaluate with Redis down: ${ev.code} ${ev.details}`);
    const gm = await cdp.callStatus(c.seg, 'GetMemberships', { master_id: M }, 10000);
    assert.equal(gm.code, cdp.status.UNAVAILABLE, `GetMemberships with Redis down: ${gm.code} ${gm.details}`);
    fs.writeFileSync(flag('checked'), '');

    await waitFlag('up');
    const r = await cdp.waitFor('Evaluate after the outage', () => u.evaluate(c.seg, [t]), u.WAIT_MS);
    assert.ok(r.entered >= 1, JSON.stringify(r));
    await live.waitCount(before + 1, 'the change made after the outage on the watch opened before it');
    assert.equal(live.error, null);
    assert.equal(live.changes[live.changes.length - 1].master_id, M);
    assert.equal(live.changes[live.changes.length - 1].kind, 'CHANGE_KIND_ENTERED');
    live.cancel();
  } finally {
    u.closeAll(c);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
