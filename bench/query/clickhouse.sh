#!/usr/bin/env bash
# A private ClickHouse server for the query benchmark: Debian's
# clickhouse-server (scripts/setup-bench.sh installs it) with its own config,
# data and logs under var/bench-clickhouse/, listening on 127.0.0.1 only, on
# free ports. The system service (/etc/clickhouse-server, /var/lib/clickhouse)
# is never used.
#
# Usage: bench/query/clickhouse.sh start   starts it (a no-op when running);
#                                          prints "HTTP_PORT TCP_PORT"
#        bench/query/clickhouse.sh stop    stops it (waits for the process)
#        bench/query/clickhouse.sh ports   prints "HTTP_PORT TCP_PORT" if running
#        bench/query/clickhouse.sh version
# Env:   BENCH_CLICKHOUSE_DIR  the folder (default: the repo's var/bench-clickhouse)
#        BENCH_CLICKHOUSE_MEMORY_BYTES  max_memory_usage per query (default 8 GB)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${BENCH_CLICKHOUSE_DIR:-$repo/var/bench-clickhouse}"
server=/usr/sbin/clickhouse-server
client=/usr/bin/clickhouse-client
memory_bytes="${BENCH_CLICKHOUSE_MEMORY_BYTES:-8000000000}"

running() {
  [ -f "$dir/server.pid" ] && kill -0 "$(cat "$dir/server.pid")" 2>/dev/null
}

ports() {
  cat "$dir/ports"
}

free_ports() {
  # Two ports the kernel says are free on 127.0.0.1 (released just before
  # ClickHouse binds them).
  node -e '
    const net = require("net");
    const take = () => new Promise((ok) => { const s = net.createServer();
      s.listen(0, "127.0.0.1", () => { const p = s.address().port; ok([s, p]); }); });
    (async () => { const a = await take(), b = await take();
      a[0].close(); b[0].close(); console.log(a[1] + " " + b[1]); })();'
}

write_config() {
  local http_port="$1" tcp_port="$2"
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/log" "$dir/format_schemas"
  cat >"$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$dir/log/server.log</log>
    <errorlog>$dir/log/server.err.log</errorlog>
    <size>100M</size>
    <count>2</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$http_port</http_port>
  <tcp_port>$tcp_port</tcp_port>
  <max_concurrent_queries>16</max_concurrent_queries>
  <uncompressed_cache_size>1073741824</uncompressed_cache_size>
  <mark_cache_size>1073741824</mark_cache_size>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
</yandex>
XML
  cat >"$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>$memory_bytes</max_memory_usage>
      <max_threads>2</max_threads>
      <use_uncompressed_cache>0</use_uncompressed_cache>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
XML
}

start() {
  [ -x "$server" ] && [ -x "$client" ] ||
    { echo "clickhouse.sh: no ClickHouse; run scripts/setup-bench.sh" >&2; exit 1; }
  if running; then
    ports
    return
  fi
  mkdir -p "$dir"
  read -r http_port tcp_port < <(free_ports)
  write_config "$http_port" "$tcp_port"
  echo "$http_port $tcp_port" >"$dir/ports"
  # The server writes its own pid file; keep its console output for errors.
  "$server" --config-file="$dir/config.xml" --pid-file="$dir/server.pid" \
    >"$dir/log/console.log" 2>&1 </dev/null &
  local launched=$!
  for _ in $(seq 1 120); do
    if "$client" --host 127.0.0.1 --port "$tcp_port" --query "SELECT 1" >/dev/null 2>&1; then
      [ -f "$dir/server.pid" ] || echo "$launched" >"$dir/server.pid"
      ports
      return
    fi
    if ! kill -0 "$launched" 2>/dev/null; then
      echo "clickhouse.sh: the server exited; see $dir/log/" >&2
      tail -5 "$dir/log/console.log" "$dir/log/server.err.log" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 0.5
  done
  echo "clickhouse.sh: the server did not answer in 60 s; see $dir/log/" >&2
  kill "$launched" 2>/dev/null || true
  exit 1
}

stop() {
  if ! running; then
    rm -f "$dir/server.pid"
    return
  fi
  local pid
  pid="$(cat "$dir/server.pid")"
  kill "$pid"
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$dir/server.pid"; return; }
    sleep 0.5
  done
  echo "clickhouse.sh: server $pid still running after 60 s; sending SIGKILL" >&2
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/server.pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  ports) running && ports ;;
  version) "$client" --version | sed -n 's/.*version \([0-9][0-9.]*[0-9]\).*/\1/p' ;;
  *) sed -n '2,15p' "$0" >&2; exit 2 ;;
esac
