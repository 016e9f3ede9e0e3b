#!/usr/bin/env bash
# test_activation.sh BUILD_DIR: activation end to end. A private Redis,
# the real identity, profile, consent and activation binaries, two
# webhook receivers (tests/tools/webhook-receiver.js: a fast one and a
# slow one) and a free port where nothing listens at first. The scenarios
# (tests/interop/scenarios/act_activation.js) feed segmentation's change
# stream with XADD and check webhooks, retries, consent, dead letters and
# the gateway stream. Then the crash case: activation is SIGKILLed while
# deliveries are in flight and restarted; every delivery must still
# arrive (at least once; distinct idempotency keys == deliveries).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

itest_init activation "${1:-}"
itest_require_node
itest_require_bins identity profile consent activation

RECEIVER=$ITEST_ROOT/tests/tools/webhook-receiver.js
SCENARIO=$ITEST_INTEROP/scenarios/act_activation.js
SECRET="itest-secret-$RANDOM-0123456789"

start_redis act
redis=$(redis_addr act)
svc_define identity identity CDP_REDIS_ADDR="$redis"
svc_define profile profile CDP_REDIS_ADDR="$redis" CDP_IDENTITY_ADDR="${SVC_GRPC[identity]}"
svc_define consent consent CDP_REDIS_ADDR="$redis" CDP_IDENTITY_ADDR="${SVC_GRPC[identity]}"
svc_define activation activation CDP_REDIS_ADDR="$redis" \
  CDP_PROFILE_ADDR="${SVC_GRPC[profile]}" CDP_CONSENT_ADDR="${SVC_GRPC[consent]}" \
  CDP_ACTIVATION_BACKOFF_BASE_MS=50 CDP_ACTIVATION_BACKOFF_MAX_MS=400 \
  CDP_ACTIVATION_POLL_MS=50 CDP_ACTIVATION_RELOAD_MS=200 CDP_ACTIVATION_BLOCK_MS=200 \
  CDP_ACTIVATION_CLAIM_INTERVAL_MS=500 CDP_ACTIVATION_CLAIM_IDLE_MS=1000 \
  CDP_ACTIVATION_LEASE_MARGIN_MS=500 CDP_ACTIVATION_RPC_TIMEOUT_MS=1000 \
  CDP_ACTIVATION_STOP_WAIT_MS=2000
for inst in identity profile consent activation; do svc_spawn "$inst"; done

# start_receiver NAME PORT: a webhook receiver, ready when it says so.
start_receiver() {
  local name=$1 port=$2 out=$ITEST_TMP/$1.out i
  node "$RECEIVER" --port "$port" --secret "$SECRET" --log "$ITEST_TMP/$name.jsonl" \
    --max-seconds 300 >"$out" 2>&1 &
  bg_track $!
  for ((i = 0; i < 100; i++)); do
    grep -q listening "$out" 2>/dev/null && return 0
    sleep "$ITEST_POLL_S"
  done
  cat "$out" >&2
  itest_fail "receiver $name did not start"
}

pick_port fast "$ITEST_PORT_LO" "$ITEST_PORT_HI" || itest_fail "no free port"
pick_port slow "$ITEST_PORT_LO" "$ITEST_PORT_HI" || itest_fail "no free port"
pick_port down "$ITEST_PORT_LO" "$ITEST_PORT_HI" || itest_fail "no free port"
start_receiver fast "$fast"
start_receiver slow "$slow"
wait_healthy identity profile consent activation

export CDP_TEST_ACTIVATION_ADDR=${SVC_GRPC[activation]} CDP_TEST_CONSENT_ADDR=${SVC_GRPC[consent]} \
  CDP_TEST_PROFILE_ADDR=${SVC_GRPC[profile]} CDP_TEST_REDIS_PORT=${REDIS_PORT[act]} \
  ACT_FAST_PORT=$fast ACT_SLOW_PORT=$slow ACT_DOWN_PORT=$down ACT_SECRET=$SECRET \
  ACT_RECEIVER=$RECEIVER ACT_TMP=$ITEST_TMP

ACT_PHASE=main node --test --test-concurrency=1 "$SCENARIO" || itest_fail "scenarios failed"

ACT_PHASE=crash-prepare node "$SCENARIO" || itest_fail "crash preparation failed"
kill_service activation
restart_service activation
wait_healthy activation
ACT_PHASE=crash-verify node "$SCENARIO" || itest_fail "deliveries lost across the crash"

stop_service activation || itest_fail "activation did not stop on SIGTERM"
itest_pass
