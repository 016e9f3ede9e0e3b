# shellcheck shell=bash
# deploy/lib.sh: shell helpers shared by deploy/run-local, tests/run and
# deploy/k8s/gen: the service list, loopback port checks, a private Redis and
# the node packages of tests/interop. Sourced, never run: it only defines
# CDP_ROOT and functions.

CDP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CDP_SERVICES_FILE=$CDP_ROOT/deploy/services
CDP_INTEROP_DIR=$CDP_ROOT/tests/interop

# How long a fresh redis-server may take to answer PING, in tenths of a second.
CDP_REDIS_START_TENTHS=100

# cdp_services [present|all]: prints "name grpc_port metrics_port health_name"
# for each service of deploy/services, in start order. "present" (the default)
# keeps only those whose services/<name>/main.c exists.
cdp_services() {
  local which=${1:-present} name grpc metrics health
  while read -r name grpc metrics health _; do
    if [[ -z $name || $name == \#* ]]; then continue; fi
    if [[ $which == present && ! -f $CDP_ROOT/services/$name/main.c ]]; then
      continue
    fi
    printf '%s %s %s %s\n' "$name" "$grpc" "$metrics" "$health"
  done <"$CDP_SERVICES_FILE"
}

# cdp_port_in_use PORT: true when something accepts TCP connections on
# 127.0.0.1:PORT (a listener on 0.0.0.0 counts too).
cdp_port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# cdp_alive PID: true while PID runs. Unlike `kill -0` it is false for a
# zombie, so a script can poll its own children before reaping them.
cdp_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# cdp_redis_start PORT DIR LOGFILE [redis-server options...]: starts a
# daemonized redis-server on 127.0.0.1:PORT with its files in DIR (pid file
# DIR/redis.pid) and waits until it answers PING. Returns 1 if it does not.
cdp_redis_start() {
  local port=$1 dir=$2 log=$3 i
  shift 3
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
    --pidfile "$dir/redis.pid" --logfile "$log" --daemonize yes "$@" >/dev/null ||
    return 1
  for ((i = 0; i < CDP_REDIS_START_TENTHS; i++)); do
    [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]] && return 0
    sleep 0.1
  done
  return 1
}

# cdp_redis_stop PORT DIR [nosave]: shuts down the redis-server that
# cdp_redis_start left in DIR (SHUTDOWN flushes the AOF; nosave skips any RDB
# save) and waits until it has exited. A Redis on PORT that is not the one of
# DIR's pid file is left alone.
cdp_redis_stop() {
  local port=$1 dir=$2 pid="" i
  [[ -s $dir/redis.pid ]] || return 0
  pid=$(<"$dir/redis.pid")
  if [[ $(redis-cli -p "$port" info server 2>/dev/null | tr -d '\r' |
    sed -n 's/^process_id://p') == "$pid" ]]; then
    redis-cli -p "$port" shutdown ${3:+"$3"} >/dev/null 2>&1 || true
  elif [[ $(cat 2>/dev/null "/proc/$pid/comm") == redis-server* ]]; then
    kill -TERM "$pid" 2>/dev/null || true
  fi
  for ((i = 0; i < CDP_REDIS_START_TENTHS; i++)); do
    [[ $(cat 2>/dev/null "/proc/$pid/comm") == redis-server* ]] || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

# cdp_interop_deps: installs tests/interop's node packages (@grpc/grpc-js,
# @grpc/proto-loader) unless node_modules is newer than the package files.
# `npm ci` when a lock file exists, falling back to `npm install` if the lock
# is out of date. Quiet; prints npm's log and returns 1 on failure.
cdp_interop_deps() {
  local dir=$CDP_INTEROP_DIR log
  [[ -f $dir/package.json ]] || return 0
  if [[ -d $dir/node_modules && $dir/node_modules -nt $dir/package.json &&
    (! -f $dir/package-lock.json || $dir/node_modules -nt $dir/package-lock.json) ]]; then
    return 0
  fi
  log=$(mktemp)
  if ! (cd "$dir" && { [[ -f package-lock.json ]] && npm ci --no-audit --no-fund --loglevel=error ||
    npm install --no-audit --no-fund --loglevel=error; }) >"$log" 2>&1 </dev/null; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
  touch "$dir/node_modules"
}
