#!/usr/bin/env bash
# test_crash.sh BUILD_DIR: the crash test. A private Redis (AOF,
# appendfsync always) and all six services; a load generator
# (tests/interop/scenarios/crash_load.js) ingests continuously and records
# every acknowledged message id. Mid-load, ingestion, identity, profile,
# consent and segmentation (the pipeline's steps) and activation are each
# killed with SIGKILL and restarted (after an outage long enough
# for a backlog, then again at once), and Redis is shut down and started
# again on the same data folder. The load generator retries failed
# batches with the same message ids. After the load stops and the pipeline
# drains, every acknowledged event must be reflected exactly once
# (scenarios/crash_verify.js), also once no stream entry is pending any more.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

STEP_EVENTS=${CDP_CRASH_STEP_EVENTS:-1000}  # acks to see between disruptions
STEP_TIMEOUT_S=60     # for those acks to arrive
ERRORS_TIMEOUT_S=20   # for the load generator to notice a disruption
STOP_TIMEOUT_S=120    # for the load generator to finish its last batches
PENDING_TIMEOUT_S=60  # for the consumer groups to have nothing pending
CLAIM_IDLE_MS=1000

itest_init crash "${1:-}"
itest_require_node
itest_require_bins identity profile consent segmentation activation ingestion

start_redis crash aof
redis=$(redis_addr crash)
ALL="identity profile consent segmentation activation ingestion"
start_suite "$redis" CDP_PIPELINE_CLAIM_IDLE_MS=$CLAIM_IDLE_MS
# shellcheck disable=SC2086
wait_healthy $ALL
export CDP_TEST_INGESTION_ADDR=$ING_ADDR CDP_TEST_PROFILE_ADDR=$PRF_ADDR
scenarios=$ITEST_INTEROP/scenarios

export CRASH_OUT=$ITEST_TMP/crash-summary.json CRASH_PROGRESS=$ITEST_TMP/crash-progress
echo "0 0" >"$CRASH_PROGRESS"
node "$scenarios/crash_load.js" >"$ITEST_TMP/load.log" 2>&1 &
load_pid=$!
bg_track "$load_pid"
load_started=$SECONDS

progress() { cat "$CRASH_PROGRESS" 2>/dev/null || echo "0 0"; }
acked() { local a _f; read -r a _f < <(progress); echo "${a:-0}"; }
failures() { local _a f; read -r _a f < <(progress); echo "${f:-0}"; }

# wait_progress WHAT FIELD TARGET TIMEOUT_S: polls the load generator's
# progress until FIELD (acked|failures) reaches TARGET.
wait_progress() {
  local what=$1 field=$2 target=$3 deadline=$((SECONDS + $4))
  until (($($field) >= target)); do
    cdp_itest_running "$load_pid" || {
      cat "$ITEST_TMP/load.log" >&2
      itest_fail "the load generator exited while waiting for $what"
    }
    ((SECONDS < deadline)) || itest_fail "timed out waiting for $what (progress: $(progress))"
    sleep "$ITEST_POLL_S"
  done
}

# more_acks WHAT: waits for STEP_EVENTS more acknowledged events.
more_acks() {
  local target=$(($(acked) + STEP_EVENTS))
  wait_progress "$target acked events ($1)" acked "$target" "$STEP_TIMEOUT_S"
  itest_log "$(acked) events acked ($1)"
}

more_acks "warm-up"

# Ingestion: its callers see errors until it is back.
f=$(failures)
kill_service ingestion
wait_progress "failed attempts while ingestion is down" failures $((f + 1)) "$ERRORS_TIMEOUT_S"
restart_service ingestion
wait_healthy ingestion
more_acks "after ingestion was killed"

# The services behind ingestion: it keeps acknowledging while a pipeline
# step is down; the backlog must drain after the restart.
for svc in identity profile consent segmentation activation; do
  kill_service "$svc"
  more_acks "while $svc is down"
  restart_service "$svc"
  wait_healthy "$svc"
  more_acks "after $svc was killed"
done

# And a quick kill and restart of each, so that calls cut off mid-flight are
# retried against the new process (a retry must carry the whole request).
for svc in identity profile consent segmentation ingestion; do
  kill_service "$svc"
  restart_service "$svc"
  wait_healthy "$svc"
  more_acks "after a quick restart of $svc"
done

# Redis: a clean shutdown (AOF flushed) and a start on the same data.
f=$(failures)
redis_down crash
wait_progress "failed attempts while Redis is down" failures $((f + 1)) "$ERRORS_TIMEOUT_S"
redis_up crash
# shellcheck disable=SC2086
wait_healthy $ALL
more_acks "after Redis restarted"

kill -TERM "$load_pid"
deadline=$((SECONDS + STOP_TIMEOUT_S))
while cdp_itest_running "$load_pid"; do
  ((SECONDS < deadline)) || itest_fail "the load generator did not finish within ${STOP_TIMEOUT_S}s"
  sleep "$ITEST_POLL_S"
done
wait "$load_pid" || itest_fail "the load generator failed: $(cat "$ITEST_TMP/load.log")"
[[ -s $CRASH_OUT ]] || itest_fail "the load generator wrote no summary"
itest_log "load ran $((SECONDS - load_started))s"

drain_started=$SECONDS
node "$scenarios/crash_verify.js" "$CRASH_OUT" || itest_fail "acknowledged events are not reflected exactly once"

# Nothing may arrive late (a redelivery applied twice): once no stream entry
# is pending or undelivered (XINFO GROUPS pending + lag), the profiles must
# still match.
pending_total() {
  local key total=0 n
  while read -r key; do
    [[ -n $key ]] || continue
    while read -r n; do total=$((total + n)); done < <(
      redis-cli -p "${REDIS_PORT[crash]}" xinfo groups "$key" 2>/dev/null |
        awk '$0 == "pending" || $0 == "lag" { getline; if ($0 ~ /^[0-9]+$/) print }')
  done < <(stream_keys)
  echo "$total"
}
# stream_keys: every key of type stream in the crash Redis (SCAN ... TYPE).
stream_keys() {
  local cursor=0 reply
  while :; do
    mapfile -t reply < <(redis-cli -p "${REDIS_PORT[crash]}" scan "$cursor" type stream count 1000)
    ((${#reply[@]} > 0)) || return 0
    printf '%s\n' "${reply[@]:1}"
    cursor=${reply[0]}
    [[ $cursor == 0 ]] && return 0
  done
}
deadline=$((SECONDS + PENDING_TIMEOUT_S))
until (($(pending_total) == 0)); do
  ((SECONDS < deadline)) || itest_fail "stream entries still pending after ${PENDING_TIMEOUT_S}s"
  sleep "$ITEST_POLL_S"
done
itest_log "pipeline drained in $((SECONDS - drain_started))s after the load stopped"
CRASH_LABEL=recheck CRASH_DRAIN_S=5 node "$scenarios/crash_verify.js" "$CRASH_OUT" ||
  itest_fail "profiles changed after the pipeline drained"
itest_pass
