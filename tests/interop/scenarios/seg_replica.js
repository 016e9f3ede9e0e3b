#!/usr/bin/env node
// seg_replica.js: a replica with a stale snapshot must not corrupt a segment
// deleted and re-created (same id) meanwhile, run by
// tests/integration/test_segmentation.sh in two phases (CDP_TEST_PHASE):
//
//   before  creates segment R (trait.zone = "x") on the main replica;
//   after   (a second replica, CDP_TEST_SEGMENTATION2_ADDR, started after R
//           was created and polling definitions only once an hour, holds R)
//           deletes R and re-creates it as trait.zone = "y" on the main
//           replica, then evaluates a zone-x profile on the stale replica:
//           its transition of the old R must not reach the new R's member
//           index; a zone-y profile evaluated on the main replica must.
'use strict';

const assert = require('node:assert/strict');
const cdp = require('../lib/cdp');
const u = require('./seg_util');

const R = `replica-${u.run}`.slice(0, 64);
const P = `m-${u.run}-rp`;
const Q = `m-${u.run}-rq`;

async function main() {
  const c = u.clients();
  if (cdp.env('CDP_TEST_PHASE') === 'before') {
    try {
      await u.createSegment(c.seg, R, 'trait.zone = "x"');
      await u.backfillDone(c.seg, R, 1);
    } finally {
      u.closeAll(c);
    }
    return;
  }
  const stale = cdp.client('segmentation', cdp.env('CDP_TEST_SEGMENTATION2_ADDR'));
  try {
    // the stale replica has loaded its one snapshot (UNAVAILABLE until then)
    await cdp.waitFor('stale replica loaded', () => u.evaluate(stale, []), u.WAIT_MS);
    await cdp.call(c.seg, 'DeleteSegment', { id: R });
    await u.createSegment(c.seg, R, 'trait.zone = "y"');
    await u.backfillDone(c.seg, R, 1);

    await u.apply(c.prf, P, [u.traitsEvent({ zone: 'x' })]);
    const r = await u.evaluate(stale, [u.touch(P, { traits: ['zone'] })]);
    assert.ok(r.entered >= 1, JSON.stringify(r));
    assert.match(u.redis('HGET', `cdp:seg:{p:${P}}:mem`, R), /^1:/,
      'precondition: the stale replica still evaluates the old R');
    const l1 = await cdp.call(c.seg, 'ListMembers', { segment_id: R });
    assert.deepEqual(l1.members.map((m) => m.master_id), [], 'the old incarnation stays out');
    assert.equal(Number(l1.total), 0);
    assert.equal((await u.memberships(c.seg, P))[R], undefined);
    const r2 = await u.evaluate(c.seg, [u.touch(P, { traits: ['zone'] })]);
    assert.equal(r2.entered, 0);

    await u.apply(c.prf, Q, [u.traitsEvent({ zone: 'y' })]);
    const r3 = await u.evaluate(c.seg, [u.touch(Q, { traits: ['zone'] })]);
    assert.ok(r3.entered >= 1);
    const l2 = await cdp.call(c.seg, 'ListMembers', { segment_id: R });
    assert.deepEqual(l2.members.map((m) => m.master_id), [Q]);
    assert.equal((await u.memberships(c.seg, Q))[R].member, true);
  } finally {
    stale.close();
    u.closeAll(c);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
