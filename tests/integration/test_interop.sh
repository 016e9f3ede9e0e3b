#!/usr/bin/env bash
# test_interop.sh BUILD_DIR: the node interop suite (tests/interop/*.test.js,
# grpc-js stubs loaded from proto/) against the six services started here
# on their own loopback ports. Uses the shared Redis of tests/run
# (CDP_TEST_REDIS_ADDR) when set, else a private one; ids are unique per run
# so the shared key space does not collide. A second profile instance talks
# to a stand-in identity (retry.test.js) to check its retries.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

itest_init interop "${1:-}"
itest_require_node
itest_require_bins identity profile consent segmentation activation ingestion

if [[ -n ${CDP_TEST_REDIS_ADDR:-} ]]; then
  redis=$CDP_TEST_REDIS_ADDR
else
  start_redis interop
  redis=$(redis_addr interop)
fi

start_suite "$redis"
# A second profile whose identity is a stand-in served by retry.test.js.
pick_port fake_identity_port "$ITEST_PORT_LO" "$ITEST_PORT_HI" || itest_fail "no free port"
start_service profile_fake profile CDP_REDIS_ADDR="$redis" \
  CDP_IDENTITY_ADDR="127.0.0.1:$fake_identity_port"
wait_healthy identity profile consent segmentation activation ingestion profile_fake

export CDP_TEST_INGESTION_ADDR=$ING_ADDR CDP_TEST_IDENTITY_ADDR=$IDN_ADDR CDP_TEST_PROFILE_ADDR=$PRF_ADDR \
  CDP_TEST_SEGMENTATION_ADDR=$SEG_ADDR CDP_TEST_CONSENT_ADDR=$CNS_ADDR CDP_TEST_ACTIVATION_ADDR=$ACT_ADDR
export CDP_TEST_FAKE_IDENTITY_PORT=$fake_identity_port CDP_TEST_PROFILE_FAKE_ADDR=${SVC_GRPC[profile_fake]}
node --test "$ITEST_INTEROP/" || itest_fail "node --test tests/interop/ failed"
itest_pass
