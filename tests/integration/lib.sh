# shellcheck shell=bash
# tests/integration/lib.sh: the harness shared by the integration test
# scripts (test_*.sh). Sourced, never run.
#
# A test script does:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   itest_init pipeline "$1"          # name, build dir; sets the EXIT trap
#   itest_require_node                # SKIPPED (exit 0) without node_modules
#   start_redis main aof              # private redis-server on a free port
#   start_stack "$(redis_addr main)"  # identity, profile, ingestion
#   wait_healthy identity profile ingestion
#   node ...                          # the scenario, against $ING_ADDR etc.
#   itest_pass
#
# Everything it starts (services, private redis-servers, background helpers)
# is recorded and stopped by the EXIT trap, whatever way the script ends;
# logs go to a private temporary folder that is kept (and its tails printed)
# when the test fails. Waits are bounded polls of a condition, never a bare
# sleep standing in for synchronization.
#
# Ports: services listen on 127.0.0.1 ports picked free in
# CDP_ITEST_PORT_LO..CDP_ITEST_PORT_HI (22000..22999: below Linux's
# ephemeral range 32768..60999, where an outgoing connection's local port
# looks free to a connect probe yet makes bind fail), private redis-servers
# in CDP_ITEST_REDIS_PORT_LO..HI (6440..6459).

ITEST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ITEST_INTEROP=$ITEST_ROOT/tests/interop

ITEST_PORT_LO=${CDP_ITEST_PORT_LO:-22000}
ITEST_PORT_HI=${CDP_ITEST_PORT_HI:-22999}
ITEST_REDIS_PORT_LO=${CDP_ITEST_REDIS_PORT_LO:-6440}
ITEST_REDIS_PORT_HI=${CDP_ITEST_REDIS_PORT_HI:-6459}
ITEST_START_TIMEOUT_S=${CDP_ITEST_START_TIMEOUT_S:-30}  # a service becomes SERVING
ITEST_STOP_TIMEOUT_S=10     # SIGTERM to exit, before SIGKILL
ITEST_REDIS_TIMEOUT_S=10    # redis-server answers PING / exits
ITEST_POLL_S=0.1
ITEST_LOG_TAIL=40

declare -A SVC_PID SVC_BIN SVC_ENV SVC_GRPC SVC_LOG
declare -A REDIS_PORT REDIS_DIR REDIS_ARGS
ITEST_SVCS=()        # instance names in start order
ITEST_BG_PIDS=()     # helper processes (load generators) to end at exit
ITEST_PORTS_TAKEN=" "
ITEST_OK=0

itest_log() { printf '[%s %s] %s\n' "$ITEST_NAME" "$(date +%T)" "$*"; }

# itest_init NAME BUILD_DIR: checks the binaries, makes the temporary folder
# and installs the cleanup trap.
itest_init() {
  ITEST_NAME=$1
  ITEST_BUILD=${2:-}
  [[ -n $ITEST_BUILD && -d $ITEST_BUILD ]] || {
    echo "usage: bash test_$ITEST_NAME.sh BUILD_DIR" >&2
    exit 2
  }
  ITEST_BUILD=$(cd "$ITEST_BUILD" && pwd)
  ITEST_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cdp-itest-$ITEST_NAME.XXXXXX")
  ITEST_RUN_ID="$(date +%s)-$$-$RANDOM"
  export CDP_TEST_RUN_ID=$ITEST_RUN_ID
  trap itest_cleanup EXIT
  trap 'itest_log "interrupted"; exit 130' INT TERM
  itest_guard
  itest_log "run id $ITEST_RUN_ID, logs in $ITEST_TMP"
}

# itest_guard: a watchdog for the case the EXIT trap cannot run (the script
# is killed with SIGKILL, e.g. by ctest's timeout): once this shell is gone
# it kills every process recorded in TMP/pids that is still one of ours (its
# command a cdp- binary, redis-server or node).
itest_guard() {
  local parent=$$ pids=$ITEST_TMP/pids
  : >"$pids"
  (
    trap '' INT TERM
    while kill -0 "$parent" 2>/dev/null; do sleep 1; done
    while read -r pid; do
      case $(cat "/proc/$pid/comm" 2>/dev/null) in
        cdp-* | redis-server | node) kill -KILL "$pid" 2>/dev/null ;;
      esac
    done <"$pids"
  ) </dev/null >/dev/null 2>&1 &
  disown
}

# itest_record_pid PID: tells the watchdog about a process to end.
itest_record_pid() { echo "$1" >>"$ITEST_TMP/pids"; }

# itest_require_node: exits 0 with a SKIPPED line when tests/interop's node
# packages are not installed (tests/run installs them).
itest_require_node() {
  if ! command -v node >/dev/null || [[ ! -d $ITEST_INTEROP/node_modules/@grpc/grpc-js ]]; then
    echo "SKIPPED: node_modules missing (run npm install in tests/interop)"
    ITEST_OK=1
    exit 0
  fi
}

# itest_require_bins NAME...: fails unless build_dir/cdp-NAME exists.
itest_require_bins() {
  local n
  for n in "$@"; do
    [[ -x $ITEST_BUILD/cdp-$n ]] || itest_fail "$ITEST_BUILD/cdp-$n is not built"
  done
}

itest_pass() {
  ITEST_OK=1
  itest_log "PASSED"
  exit 0
}

# itest_fail MESSAGE: reports and exits 1 (the trap prints the logs' tails).
itest_fail() {
  printf '[%s %s] FAIL: %s\n' "$ITEST_NAME" "$(date +%T)" "$*" >&2
  exit 1
}

# ---------------------------------------------------------------- ports

itest_port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port VAR LO HI: sets VAR to a port in [LO, HI] that nothing listens
# on and this script has not handed out before. Starts at a random offset
# so that parallel runs rarely race for the same port. Must not run in a
# subshell ($(...)): the record of handed-out ports lives in this shell.
pick_port() {
  local -n out=$1
  local lo=$2 span=$(($3 - $2 + 1)) start i p
  start=$((RANDOM % span))
  for ((i = 0; i < span; i++)); do
    p=$((lo + (start + i) % span))
    [[ " $ITEST_PORTS_TAKEN " == *" $p "* ]] && continue
    if itest_port_free "$p"; then
      ITEST_PORTS_TAKEN+=" $p "
      out=$p
      return 0
    fi
  done
  return 1
}

# ---------------------------------------------------------------- redis

# start_redis NAME [aof]: a private redis-server on a free port with its data
# in its own folder (AOF with appendfsync always when "aof" is given, else no
# persistence). Waits until it answers PING.
start_redis() {
  local name=$1 mode=${2:-} port dir
  pick_port port "$ITEST_REDIS_PORT_LO" "$ITEST_REDIS_PORT_HI" ||
    itest_fail "no free redis port in $ITEST_REDIS_PORT_LO..$ITEST_REDIS_PORT_HI"
  dir=$ITEST_TMP/redis-$name
  mkdir -p "$dir"
  REDIS_PORT[$name]=$port
  REDIS_DIR[$name]=$dir
  if [[ $mode == aof ]]; then
    REDIS_ARGS[$name]="--appendonly yes --appendfsync always --save ''"
  else
    REDIS_ARGS[$name]="--appendonly no --save ''"
  fi
  redis_up "$name"
}

# redis_up NAME: (re)starts the redis-server NAME with its port, folder and
# options, and waits until it answers PING.
redis_up() {
  local name=$1 port=${REDIS_PORT[$1]} dir=${REDIS_DIR[$1]} i
  eval "redis-server --port $port --bind 127.0.0.1 --dir '$dir' --pidfile '$dir/redis.pid' \
    --logfile '$dir/redis.log' --daemonize yes ${REDIS_ARGS[$name]}" >/dev/null ||
    itest_fail "redis-server $name did not start"
  for ((i = 0; i < ITEST_REDIS_TIMEOUT_S * 10; i++)); do
    if [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]]; then
      # (a restarted server answers LOADING, not PONG, until its AOF is read)
      [[ -s $dir/redis.pid ]] && itest_record_pid "$(<"$dir/redis.pid")"
      itest_log "redis $name up on 127.0.0.1:$port"
      return 0
    fi
    sleep "$ITEST_POLL_S"
  done
  tail -n "$ITEST_LOG_TAIL" "$dir/redis.log" >&2
  itest_fail "redis-server $name does not answer PING on port $port"
}

# redis_down NAME [nosave]: SHUTDOWN (which flushes the AOF) and waits until
# the process has exited.
redis_down() {
  local name=$1 port=${REDIS_PORT[$1]} dir=${REDIS_DIR[$1]} pid="" i
  [[ -s $dir/redis.pid ]] && pid=$(<"$dir/redis.pid")
  redis-cli -p "$port" shutdown ${2:+"$2"} >/dev/null 2>&1 || true
  [[ -n $pid ]] || return 0
  for ((i = 0; i < ITEST_REDIS_TIMEOUT_S * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || {
      itest_log "redis $name stopped"
      return 0
    }
    sleep "$ITEST_POLL_S"
  done
  kill -KILL "$pid" 2>/dev/null || true
  itest_log "redis $name did not exit on SHUTDOWN; killed"
}

redis_addr() { echo "127.0.0.1:${REDIS_PORT[$1]}"; }

# ---------------------------------------------------------------- services

# svc_define INSTANCE BINARY [VAR=VALUE...]: records how to run
# build_dir/cdp-BINARY: a free gRPC port, a free metrics port and the given
# environment (values without spaces). Sets SVC_GRPC[INSTANCE] to its
# "127.0.0.1:port". Starts nothing.
svc_define() {
  local inst=$1 bin=$ITEST_BUILD/cdp-$2 gport mport
  shift 2
  [[ -x $bin ]] || itest_fail "$bin is not built"
  pick_port gport "$ITEST_PORT_LO" "$ITEST_PORT_HI" || itest_fail "no free service port"
  pick_port mport "$ITEST_PORT_LO" "$ITEST_PORT_HI" || itest_fail "no free service port"
  SVC_BIN[$inst]=$bin
  SVC_GRPC[$inst]=127.0.0.1:$gport
  SVC_LOG[$inst]=$ITEST_TMP/$inst.log
  SVC_ENV[$inst]="CDP_GRPC_ADDR=127.0.0.1:$gport CDP_METRICS_ADDR=127.0.0.1:$mport $*"
  ITEST_SVCS+=("$inst")
}

# svc_env_add INSTANCE VAR=VALUE...: more environment for a defined instance.
svc_env_add() {
  local inst=$1
  shift
  SVC_ENV[$inst]+=" $*"
}

# start_service INSTANCE BINARY [VAR=VALUE...]: svc_define, then starts it
# (its log, stdout and stderr, goes to TMP/INSTANCE.log). Does not wait.
start_service() {
  svc_define "$@"
  svc_spawn "$1"
}

# svc_spawn INSTANCE: runs the instance's binary with its recorded
# environment, appending to its log.
svc_spawn() {
  local inst=$1
  local -a vars
  read -r -a vars <<<"${SVC_ENV[$inst]}"
  echo "---- start $(date +%T.%N)" >>"${SVC_LOG[$inst]}"
  env CDP_LOG_LEVEL="${CDP_LOG_LEVEL:-info}" "${vars[@]}" "${SVC_BIN[$inst]}" \
    >>"${SVC_LOG[$inst]}" 2>&1 </dev/null &
  SVC_PID[$inst]=$!
  itest_record_pid "$!"
  itest_log "started $inst (pid ${SVC_PID[$inst]}) on ${SVC_GRPC[$inst]}"
}

# start_stack REDIS_ADDR [VAR=VALUE...]: identity, profile and ingestion on
# REDIS_ADDR, each told every other's address (CDP_<NAME>_ADDR), with the
# extra environment given; exports IDN_ADDR, PRF_ADDR, ING_ADDR. The
# pipeline's consent and segmentation steps are off (empty addresses).
start_stack() {
  local redis=$1
  shift
  start_services "$redis" "identity profile ingestion" CDP_CONSENT_ADDR= CDP_SEGMENTATION_ADDR= "$@"
}

# start_suite REDIS_ADDR [VAR=VALUE...]: all six services, the full path;
# also exports SEG_ADDR, CNS_ADDR, ACT_ADDR.
start_suite() {
  local redis=$1
  shift
  start_services "$redis" "identity profile consent segmentation activation ingestion" "$@"
}

# start_services REDIS_ADDR "INSTANCE..." [VAR=VALUE...]: defines each
# instance (binary of the same name) on REDIS_ADDR, tells each every other's
# address, starts them; exports <ABBR>_ADDR for those started.
start_services() {
  local redis=$1 list=$2 inst peers=()
  shift 2
  for inst in $list; do
    svc_define "$inst" "$inst" CDP_REDIS_ADDR="$redis" "$@"
    peers+=("CDP_${inst^^}_ADDR=${SVC_GRPC[$inst]}")
  done
  export IDN_ADDR=${SVC_GRPC[identity]:-} PRF_ADDR=${SVC_GRPC[profile]:-} \
    ING_ADDR=${SVC_GRPC[ingestion]:-} SEG_ADDR=${SVC_GRPC[segmentation]:-} \
    CNS_ADDR=${SVC_GRPC[consent]:-} ACT_ADDR=${SVC_GRPC[activation]:-}
  for inst in $list; do
    svc_env_add "$inst" "${peers[@]}"
    svc_spawn "$inst"
  done
}

svc_alive() {
  local pid=${SVC_PID[$1]:-} stat
  [[ -n $pid ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# wait_status STATUS TIMEOUT_S INSTANCE...: polls grpc.health.v1 Check on
# each instance until all report STATUS (SERVING or NOT_SERVING). Fails,
# with the logs, if one dies or the time runs out.
wait_status() {
  local want=$1 timeout=$2 inst addrs=()
  shift 2
  for inst in "$@"; do addrs+=("${SVC_GRPC[$inst]}"); done
  node "$ITEST_INTEROP/tools/wait_health.js" --status "$want" \
    --timeout-ms $((timeout * 1000)) "${addrs[@]}" &
  local waiter=$!
  while cdp_itest_running "$waiter"; do
    for inst in "$@"; do
      svc_alive "$inst" || {
        kill "$waiter" 2>/dev/null
        wait "$waiter" 2>/dev/null
        itest_fail "$inst exited while waiting for $want"
      }
    done
    sleep "$ITEST_POLL_S"
  done
  wait "$waiter" || itest_fail "not all of [$*] reported $want within ${timeout}s"
  itest_log "$* $want"
}

cdp_itest_running() { kill -0 "$1" 2>/dev/null && [[ $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]; }

# wait_healthy INSTANCE...: every instance is SERVING (Redis reached).
wait_healthy() { wait_status SERVING "$ITEST_START_TIMEOUT_S" "$@"; }

# kill_service INSTANCE: SIGKILL, and reaps it.
kill_service() {
  local inst=$1 pid=${SVC_PID[$1]}
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  echo "---- killed -9 $(date +%T.%N)" >>"${SVC_LOG[$inst]}"
  itest_log "killed -9 $inst (pid $pid)"
}

# restart_service INSTANCE: starts it again on the same ports and
# environment (after kill_service or stop_service).
restart_service() { svc_spawn "$1"; }

# stop_service INSTANCE: SIGTERM, then SIGKILL after ITEST_STOP_TIMEOUT_S.
# Returns 1 if it had to be killed.
stop_service() {
  local inst=$1 pid=${SVC_PID[$1]:-} i
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < ITEST_STOP_TIMEOUT_S * 10; i++)); do
    svc_alive "$inst" || {
      wait "$pid" 2>/dev/null
      SVC_PID[$inst]=""
      return 0
    }
    sleep "$ITEST_POLL_S"
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  SVC_PID[$inst]=""
  itest_log "$inst did not exit within ${ITEST_STOP_TIMEOUT_S}s of SIGTERM; killed"
  return 1
}

# bg_track PID: a helper process to end at exit.
bg_track() {
  ITEST_BG_PIDS+=("$1")
  itest_record_pid "$1"
}

# ---------------------------------------------------------------- cleanup

itest_cleanup() {
  local rc=$? inst name pid
  trap - EXIT INT TERM
  for pid in "${ITEST_BG_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  for ((i = ${#ITEST_SVCS[@]} - 1; i >= 0; i--)); do
    stop_service "${ITEST_SVCS[i]}" || true
  done
  for name in "${!REDIS_PORT[@]}"; do
    redis_down "$name" nosave >/dev/null
  done
  : >"$ITEST_TMP/pids"   # all stopped: nothing left for the watchdog
  if [[ $ITEST_OK == 1 && $rc == 0 && -z ${CDP_ITEST_KEEP:-} ]]; then
    rm -rf "$ITEST_TMP"
  else
    for inst in "${ITEST_SVCS[@]}"; do
      echo "---- last lines of $inst.log" >&2
      tail -n "$ITEST_LOG_TAIL" "${SVC_LOG[$inst]}" >&2 2>/dev/null
    done
    echo "[$ITEST_NAME] logs kept in $ITEST_TMP" >&2
    ((rc == 0)) && rc=1
  fi
  exit "$rc"
}
