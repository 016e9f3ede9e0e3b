#!/usr/bin/env bash
# test_interop.sh BUILD_DIR: the node interop suite (tests/interop/*.test.js,
# grpc-js stubs loaded from proto/) against the three services started here
# on their own loopback ports. Uses the shared Redis of tests/run
# (CDP_TEST_REDIS_ADDR) when set, else a private one; ids are unique per run
# so the shared key space does not collide.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

itest_init interop "${1:-}"
itest_require_node
itest_require_bins identity profile ingestion

if [[ -n ${CDP_TEST_REDIS_ADDR:-} ]]; then
  redis=$CDP_TEST_REDIS_ADDR
else
  start_redis interop
  redis=$(redis_addr interop)
fi

start_stack "$redis"
wait_healthy identity profile ingestion

export CDP_TEST_INGESTION_ADDR=$ING_ADDR CDP_TEST_IDENTITY_ADDR=$IDN_ADDR CDP_TEST_PROFILE_ADDR=$PRF_ADDR
node --test "$ITEST_INTEROP/" || itest_fail "node --test tests/interop/ failed"
itest_pass
