#!/usr/bin/env bash
# test_segmentation.sh BUILD_DIR: the segmentation service against the real
# identity, profile and ingestion services on a private Redis (AOF on).
#   1. tests/interop/scenarios/seg_core.js: CRUD and errors, Evaluate and
#      memberships, replays, exits, affected segments only, ListMembers
#      paging, WatchSegment (live, resumed, "0"), backfill, a merge through
#      ingestion, time-based exits by the test clock (CDP_CLOCK_OFFSET_FILE).
#   2. seg_replica.js: a second replica whose snapshot is stale must not put
#      members of a deleted segment into the re-created one (same id).
#   3. seg_outage.js: Redis stopped and started again: UNAVAILABLE while it
#      is down, and a watcher opened before the outage gets later changes.
#   4. crash: seg_crash.js drives Evaluate-heavy load (every call retried
#      until OK) while segmentation is killed with SIGKILL and restarted;
#      then the change stream must hold exactly one `entered` per (segment,
#      master) and every member must be indexed.
# Segmentation is stopped with SIGTERM after each part; under
# -DCDP_SANITIZE=ON any sanitizer report in a service log fails the test.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CRASH_KILLS=2            # SIGKILLs of segmentation during the load
CRASH_KILL_AFTER=150     # Evaluate calls answered between kills

itest_init segmentation "${1:-}"
itest_require_node
itest_require_bins identity profile segmentation ingestion

start_redis main aof
redis=$(redis_addr main)
clock=$ITEST_TMP/clock_offset
: >"$clock"
start_services "$redis" "identity profile segmentation ingestion" CDP_CONSENT_ADDR= \
  CDP_CLOCK_OFFSET_FILE="$clock" CDP_SEGMENTATION_SCHEDULER_MS=100 \
  CDP_SEGMENTATION_RELOAD_MS=200 CDP_SEGMENTATION_WATCH_BLOCK_MS=200
wait_healthy identity profile segmentation ingestion

seg_metrics=$(tr ' ' '\n' <<<"${SVC_ENV[segmentation]}" | sed -n 's/^CDP_METRICS_ADDR=//p')
export CDP_TEST_SEGMENTATION_ADDR=$SEG_ADDR CDP_TEST_PROFILE_ADDR=$PRF_ADDR \
  CDP_TEST_INGESTION_ADDR=$ING_ADDR CDP_TEST_IDENTITY_ADDR=$IDN_ADDR \
  CDP_TEST_REDIS_PORT=${REDIS_PORT[main]} CDP_TEST_CLOCK_FILE=$clock \
  CDP_TEST_SEGMENTATION_METRICS=$seg_metrics
scenarios=$ITEST_INTEROP/scenarios

node --test --test-concurrency=1 "$scenarios/seg_core.js" || itest_fail "seg_core scenario failed"

# a clean stop (sanitizer builds check for leaks at exit) and a restart
stop_service segmentation || itest_fail "segmentation did not stop on SIGTERM"
restart_service segmentation
wait_healthy segmentation

# ---- a replica with a stale snapshot and a segment deleted and re-created
CDP_TEST_PHASE=before node "$scenarios/seg_replica.js" || itest_fail "replica: setup failed"
start_service segb segmentation CDP_REDIS_ADDR="$redis" CDP_IDENTITY_ADDR="$IDN_ADDR" \
  CDP_SEGMENTATION_RELOAD_MS=3600000 CDP_SEGMENTATION_SCHEDULER_MS=3600000
wait_healthy segb
CDP_TEST_PHASE=after CDP_TEST_SEGMENTATION2_ADDR=${SVC_GRPC[segb]} node "$scenarios/seg_replica.js" ||
  itest_fail "replica: a stale replica corrupted a re-created segment"
stop_service segb || itest_fail "segb did not stop on SIGTERM"

# ---- Redis restarts under a live watcher
odir=$ITEST_TMP/outage
mkdir -p "$odir"
SEG_OUTAGE_DIR=$odir node "$scenarios/seg_outage.js" &
outage=$!
bg_track "$outage"
wait_file() {
  local i
  for ((i = 0; i < 300; i++)); do
    [[ -e $1 ]] && return 0
    cdp_itest_running "$outage" || return 1
    sleep "$ITEST_POLL_S"
  done
  return 1
}
wait_file "$odir/ready" || itest_fail "outage: the watcher did not start"
redis_down main
touch "$odir/down"
wait_file "$odir/checked" || itest_fail "outage: wrong answers while Redis was down"
redis_up main
wait_healthy segmentation
touch "$odir/up"
wait "$outage" || itest_fail "outage: segmentation did not recover after Redis came back"

# ---- crash: SIGKILL during Evaluate-heavy load
progress=$ITEST_TMP/seg_crash.progress
: >"$progress"
CDP_TEST_PHASE=setup node "$scenarios/seg_crash.js" || itest_fail "crash: setup failed"
CDP_TEST_PHASE=load SEG_CRASH_PROGRESS=$progress SEG_CRASH_OUT=$ITEST_TMP/seg_crash.json \
  node "$scenarios/seg_crash.js" &
loader=$!
bg_track "$loader"
answered() { local n; n=$(cat "$progress" 2>/dev/null); echo "${n:-0}"; }
for ((k = 1; k <= CRASH_KILLS; k++)); do
  want=$((k * CRASH_KILL_AFTER))
  for ((i = 0; i < 300; i++)); do
    done_calls=$(answered)
    ((done_calls >= want)) && break
    cdp_itest_running "$loader" || break
    sleep "$ITEST_POLL_S"
  done
  ((done_calls >= want)) || itest_fail "crash: load stalled at $done_calls answered calls"
  kill_service segmentation
  restart_service segmentation
  wait_healthy segmentation
done
wait "$loader" || itest_fail "crash: the load did not finish cleanly"
CDP_TEST_PHASE=verify SEG_CRASH_OUT=$ITEST_TMP/seg_crash.json node "$scenarios/seg_crash.js" ||
  itest_fail "crash: lost or duplicated transitions"

stop_service segmentation || itest_fail "segmentation did not stop on SIGTERM"
# under -DCDP_SANITIZE=ON: any report in a log fails the test
if grep -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$ITEST_TMP"/*.log >&2; then
  itest_fail "sanitizer reports in the service logs"
fi
itest_pass
