#!/usr/bin/env bash
# test_e2e.sh: the whole path over all six services on loopback and a
# private Redis: an ingested event ends as a signed webhook POST and a
# gateway message for the person who consented, and as nothing (deliveries
# BLOCKED, the denial audited) for one without consent and one whose email
# is suppressed; with segmentation's clock moved 31 days on, the members of
# a time-based segment exit without a new event. The scenario is
# tests/interop/scenarios/e2e_activation.js.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

itest_init e2e "${1:-}"
itest_require_node
itest_require_bins identity profile consent segmentation activation ingestion

start_redis e2e aof
clock_file=$ITEST_TMP/clock-offset
: >"$clock_file"

pick_port receiver_port "$ITEST_PORT_LO" "$ITEST_PORT_HI" || itest_fail "no free port"
secret=e2e-secret-$RANDOM$RANDOM-0123456789
node "$ITEST_ROOT/tests/tools/webhook-receiver.js" --port "$receiver_port" --secret "$secret" \
  --log "$ITEST_TMP/receiver.jsonl" --max-seconds 300 >"$ITEST_TMP/receiver.log" 2>&1 &
bg_track $!

start_suite "$(redis_addr e2e)" \
  CDP_CLOCK_OFFSET_FILE="$clock_file" CDP_SEGMENTATION_SCHEDULER_MS=200 \
  CDP_ACTIVATION_BACKOFF_BASE_MS=50 CDP_ACTIVATION_BACKOFF_MAX_MS=500 \
  CDP_PIPELINE_BACKOFF_MAX_MS=500
wait_healthy identity profile consent segmentation activation ingestion

export CDP_TEST_INGESTION_ADDR=$ING_ADDR CDP_TEST_SEGMENTATION_ADDR=$SEG_ADDR \
  CDP_TEST_CONSENT_ADDR=$CNS_ADDR CDP_TEST_ACTIVATION_ADDR=$ACT_ADDR CDP_TEST_PROFILE_ADDR=$PRF_ADDR \
  CDP_TEST_RECEIVER_URL="http://127.0.0.1:$receiver_port/hook" CDP_TEST_RECEIVER_SECRET="$secret" \
  CDP_TEST_CLOCK_FILE="$clock_file"
node "$ITEST_INTEROP/scenarios/e2e_activation.js" || itest_fail "the end-to-end scenario failed"
itest_pass
