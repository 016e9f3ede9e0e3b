#!/usr/bin/env bash
# test_pipeline.sh BUILD_DIR: the pipeline end to end on a private Redis
# (AOF on): exact counts over 2,000 events, duplicates, identity converging
# under concurrent Resolve/Track through two identity replicas, merges
# (tests/interop/scenarios/pipeline.js); then Redis is shut down and started
# again, and every service's health must go NOT_SERVING and back to SERVING
# with the data intact (scenarios/redis_outage.js).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REDIS_DOWN_S=20   # how long services may take to notice Redis left / came back

itest_init pipeline "${1:-}"
itest_require_node
itest_require_bins identity profile ingestion

start_redis main aof
redis=$(redis_addr main)
start_stack "$redis"
start_service identity2 identity CDP_REDIS_ADDR="$redis" CDP_PROFILE_ADDR="$PRF_ADDR"
wait_healthy identity identity2 profile ingestion

export CDP_TEST_INGESTION_ADDR=$ING_ADDR CDP_TEST_IDENTITY_ADDR=$IDN_ADDR \
  CDP_TEST_IDENTITY2_ADDR=${SVC_GRPC[identity2]} CDP_TEST_PROFILE_ADDR=$PRF_ADDR
scenarios=$ITEST_INTEROP/scenarios

node --test "$scenarios/pipeline.js" || itest_fail "pipeline scenario failed"

CDP_TEST_PHASE=before node --test "$scenarios/redis_outage.js" || itest_fail "outage: setup failed"
redis_down main
CDP_TEST_PHASE=down node --test "$scenarios/redis_outage.js" ||
  itest_fail "outage: services did not report Redis down correctly"
redis_up main
wait_status SERVING "$REDIS_DOWN_S" identity identity2 profile ingestion
CDP_TEST_PHASE=up node --test "$scenarios/redis_outage.js" ||
  itest_fail "outage: services did not recover after Redis came back"

itest_pass
