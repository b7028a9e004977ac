#!/usr/bin/env bash
# Ingest benchmark: drives a fresh, real `minpanel serve` (fsync before every
# acknowledgement, which is always on) over 127.0.0.1 with bench/loadgen (or
# wrk) and reports events/s, latency, peak RSS, CPU of server and driver and
# whether every acknowledged event was stored. Builds only the load generator
# (in build-bench/, target loadgen); never the server. See docs/benchmarks.md.
#
# Usage: bench/ingest.sh [--runs N] [--duration 15s] [--connections 16]
#                        [--routes "track import segment posthog"] [--out FILE] [--no-export-check]
#                        [--driver loadgen|wrk] [--policy FILE]
#        routes: track, import, segment, posthog (/batch/ as posthog-node), and plausible (POST /api/event, one
#                       event a request as plausible-tracker sends it; loadgen only)
#        --policy FILE  the project's privacy policy for every run (copied to
#                       <data>/policies/bench.toml before the server starts);
#                       without it the strict default policy applies
# Env:   MINPANEL_BIN (default $BUILD_DIR/apps/minpanel/minpanel, BUILD_DIR=build)
#        LOADGEN_BIN  a prebuilt loadgen (default: build-bench/bench/loadgen, built here)
#        BENCH_DIR    parent of the temporary data folders (default: the repo's var/)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${MINPANEL_BIN:-$repo/${BUILD_DIR:-build}/apps/minpanel/minpanel}"
runs=3
duration=15s
connections=16
threads=1
routes="track import"
templates=64
out=""
export_check=1
driver=loadgen
policy=""
project_name=bench

while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    --routes) routes="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --no-export-check) export_check=0; shift ;;
    --driver) driver="$2"; shift 2 ;;
    --policy) policy="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "ingest.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

case "$driver" in
  loadgen) tools="node curl cmake" ;;
  wrk) tools="wrk node curl" ;;
  *) echo "ingest.sh: --driver must be loadgen or wrk" >&2; exit 2 ;;
esac
if [ -n "${LOADGEN_BIN:-}" ]; then
  tools="node curl"
fi
if [ "$driver" = wrk ] && { [[ " $routes " == *" plausible "* ]] || [[ " $routes " == *" posthog "* ]]; }; then
  echo "ingest.sh: the plausible and posthog routes need --driver loadgen" >&2
  exit 2
fi
for tool in $tools; do
  command -v "$tool" >/dev/null || { echo "ingest.sh: $tool is required (scripts/setup.sh installs it)" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "ingest.sh: no minpanel binary at $bin (run make build, or set MINPANEL_BIN)" >&2; exit 1; }
if [ -n "$policy" ]; then
  [ -f "$policy" ] || { echo "ingest.sh: no policy file at $policy" >&2; exit 1; }
  policy="$(cd "$(dirname "$policy")" && pwd)/$(basename "$policy")"
  "$bin" policy check "$policy" >/dev/null ||
    { echo "ingest.sh: $policy is not a valid policy (minpanel policy check)" >&2; exit 1; }
fi

# Seconds for loadgen from wrk's duration syntax (15s, 2m, 15).
duration_s="$(awk -v d="$duration" 'BEGIN {
  n = d + 0; u = substr(d, length(d)); if (u == "m") n *= 60; else if (u == "h") n *= 3600; print n }')"

loadgen="${LOADGEN_BIN:-$repo/build-bench/bench/loadgen}"
if [ "$driver" = loadgen ] && [ -z "${LOADGEN_BIN:-}" ]; then
  # Only the one-file load generator; the server binary is never built here.
  mkdir -p "$repo/build-bench"
  if [ ! -f "$repo/build-bench/build.ninja" ]; then
    cmake -S "$repo" -B "$repo/build-bench" -G Ninja -DMINPANEL_BENCH=ON -DMINPANEL_TESTS=OFF \
      -DCMAKE_BUILD_TYPE=Release >"$repo/build-bench/loadgen-build.log" 2>&1 ||
      { echo "ingest.sh: configuring build-bench failed; see build-bench/loadgen-build.log" >&2; exit 1; }
  fi
  cmake --build "$repo/build-bench" --target loadgen -j2 >>"$repo/build-bench/loadgen-build.log" 2>&1 ||
    { echo "ingest.sh: building loadgen failed; see build-bench/loadgen-build.log" >&2; exit 1; }
fi
if [ "$driver" = loadgen ] && [ ! -x "$loadgen" ]; then
  echo "ingest.sh: no loadgen at $loadgen" >&2
  exit 1
fi

build_type="unknown"
cache="$(dirname "$(dirname "$(dirname "$bin")")")/CMakeCache.txt"
if [ -f "$cache" ]; then
  build_type="$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$cache")"
fi
if [ "$build_type" != "Release" ]; then
  echo "ingest.sh: warning: $bin is a '$build_type' build, not Release" >&2
fi

bench_parent="${BENCH_DIR:-$repo/var}"
mkdir -p "$bench_parent"
work="$(mktemp -d "$bench_parent/bench-ingest.XXXXXX")"
fs_type="$(stat -f -c %T "$work")"
if [ "$fs_type" = "tmpfs" ]; then
  echo "ingest.sh: warning: $work is on tmpfs, where fsync costs nothing" >&2
fi

server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A free port below the ephemeral range, so no outgoing connection takes it
# while the server restarts on it.
free_port() {
  node -e '
    const net = require("net");
    const tryPort = () => {
      const port = 10000 + Math.floor(Math.random() * 22000);
      const s = net.createServer().once("error", tryPort).listen(port, "127.0.0.1", () => { console.log(port); s.close(); });
    };
    tryPort();'
}

# start_server DATA KEYS PORT LOG: starts minpanel and waits for /healthz.
start_server() {
  "$bin" serve --data "$1" --keys "$2" --listen "127.0.0.1:$3" 2>>"$4" &
  server_pid=$!
  for _ in $(seq 1 400); do
    if curl -sf -o /dev/null "http://127.0.0.1:$3/healthz"; then
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || { echo "ingest.sh: server exited; log:" >&2; tail -20 "$4" >&2; exit 1; }
    sleep 0.05
  done
  echo "ingest.sh: server did not become healthy" >&2
  exit 1
}

stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || { echo "ingest.sh: server exited with $? on SIGTERM" >&2; exit 1; }
  server_pid=""
}

metric() { # metric PORT NAME: sums a counter/gauge over its labels (/metrics needs the secret)
  curl -sf -u "$secret:" "http://127.0.0.1:$1/metrics" | awk -v name="$2" '$1 == name || index($1, name "{") == 1 { sum += $NF } END { printf "%d\n", sum }'
}

cpu_ticks() { # user + system clock ticks of a process
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

field() { # field LINE NAME
  sed -n "s/.* $2=\([0-9]*\).*/\1/p" <<<" $1"
}

json_field() { # json_field LINE NAME: a number from loadgen's one-line JSON
  sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"
}

# run_driver ROUTE BODIES PORT SECRET: runs the load, then sets requests,
# acked_requests, refused, errors, duration_us, p50_us, p99_us, driver_cpu and
# unanswered (requests that may be stored without an acknowledgement).
run_driver() {
  local route="$1" bodies="$2" port="$3" secret="$4" output line started
  started="$(date +%s.%N)"
  if [ "$driver" = wrk ]; then
    output="$( (TIMEFORMAT='DRIVERCPU %U %S'; time wrk -t"$threads" -c"$connections" -d"$duration" --timeout 30s --latency \
      -s "$repo/bench/ingest/ingest.lua" "http://127.0.0.1:$port" -- "$route" "$bodies" "$templates" "$secret" "$token") 2>&1)"
  else
    local args=(--host 127.0.0.1 --port "$port" --connections "$connections" --duration-s "$duration_s"
      --timeout-s 30 --bodies "$bodies" --batch-events "$batch" --expect-body 1)
    if [ "$route" = track ]; then
      args+=(--path "/track?ip=0&verbose=0" --header "Content-Type: application/x-www-form-urlencoded"
        --token-encoding base64 --body-prefix "data=")
    elif [ "$route" = plausible ]; then
      # plausible-tracker: one event per request, JSON as text/plain, 202 ok;
      # one browser on one address (the visitor id is still computed each time).
      args+=(--path "/api/event" --header "Content-Type: text/plain" --expect-status 202 --expect-body ok
        --header "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
    elif [ "$route" = posthog ]; then
      # posthog-node: the project token as api_key in the body.
      args+=(--path "/batch/" --header "Content-Type: application/json" --token-encoding hex
        --expect-body '{"status":1}')
    elif [ "$route" = segment ]; then
      # analytics-node: the write key (the project token) as the Basic user.
      args+=(--path "/v1/batch" --header "Content-Type: application/json"
        --header "Authorization: Basic $(printf '%s:' "$token" | base64 -w0)" --token-encoding hex
        --expect-body '{"success":true}')
    else
      args+=(--path "/import?verbose=0" --header "Content-Type: application/json"
        --header "Authorization: Basic $(printf '%s:' "$secret" | base64 -w0)" --token-encoding hex)
    fi
    output="$( (TIMEFORMAT='DRIVERCPU %U %S'; time "$loadgen" "${args[@]}") 2>&1)"
  fi
  wall="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')"
  driver_cpu="$(awk -v w="$wall" '/^DRIVERCPU/ { printf "%.0f", 100 * ($2 + $3) / w }' <<<"$output")"
  if [ "$driver" = wrk ]; then
    line="$(grep '^RESULT ' <<<"$output" || true)"
    [ -n "$line" ] || { echo "ingest.sh: wrk printed no result:" >&2; echo "$output" >&2; exit 1; }
    grep '^REFUSAL ' <<<"$output" >&2 || true
    requests="$(field "$line" requests)"
    acked_requests="$(field "$line" acked)"
    refused="$(field "$line" refused)"
    errors=$(($(field "$line" err_connect) + $(field "$line" err_read) + $(field "$line" err_write) + $(field "$line" err_timeout)))
    duration_us="$(field "$line" duration_us)"
    p50_us="$(field "$line" p50_us)"
    p99_us="$(field "$line" p99_us)"
    # wrk abandons the requests in flight when it stops.
    unanswered="$connections"
  else
    line="$(grep '^{' <<<"$output" || true)"
    [ -n "$line" ] || { echo "ingest.sh: loadgen printed no result:" >&2; echo "$output" >&2; exit 1; }
    grep '^loadgen: ' <<<"$output" >&2 || true
    requests="$(json_field "$line" requests)"
    # loadgen waits for the requests in flight at the end: every acknowledgement
    # of the run counts for the stored check, the window's for the rate.
    acked_requests="$(json_field "$line" acknowledged_total)"
    window_acked="$(json_field "$line" acknowledged)"
    refused="$(json_field "$line" refused_total)"
    errors="$(json_field "$line" errors)"
    duration_us="$(awk -v d="$(json_field "$line" duration_s)" 'BEGIN { printf "%.0f", d * 1e6 }')"
    p50_us="$(json_field "$line" p50_us)"
    p99_us="$(json_field "$line" p99_us)"
    unanswered="$(json_field "$line" unanswered)"
  fi
}

results="$work/results.tsv"
: >"$results"

echo "# minpanel ingest benchmark: $(date -u +%Y-%m-%dT%H:%M:%SZ)" >&2
echo "# binary $bin ($build_type), $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), data on $fs_type" >&2
if [ "$driver" = wrk ]; then
  echo "# driver wrk -t$threads -c$connections -d$duration, $runs run(s) per route, $templates bodies per route" >&2
else
  echo "# driver $loadgen -c$connections -d${duration_s}s, $runs run(s) per route, $templates bodies per route" >&2
fi
echo "# privacy policy: ${policy:-the built-in default}" >&2

for route in $routes; do
  case "$route" in track) batch=50 ;; segment) batch=15 ;; posthog) batch=20 ;; plausible) batch=1 ;; *) batch=2000 ;; esac
  for run in $(seq 1 "$runs"); do
    dir="$work/$route-$run"
    mkdir -p "$dir/data" "$dir/keys"
    chmod 700 "$dir/keys"
    log="$dir/server.log"
    project="$("$bin" project create "$project_name" --data "$dir/data" --keys "$dir/keys" --json)"
    if [ -n "$policy" ]; then
      # Read by the server at start-up (src/privacy/policy_store.h).
      mkdir -p "$dir/data/policies"
      cp "$policy" "$dir/data/policies/$project_name.toml"
    fi
    token="$(node -e 'console.log(JSON.parse(process.argv[1]).token)' "$project")"
    secret="$(node -e 'console.log(JSON.parse(process.argv[1]).secret)' "$project")"
    nonce="$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    if [ "$route" = plausible ]; then
      # The site's domain picks the project (docs/formats/plausible.md).
      "$bin" project set-domains "$project_name" bench.example --data "$dir/data" --keys "$dir/keys" >/dev/null
      event_bytes="$(node "$repo/bench/ingest/make_plausible_templates.mjs" "$dir/bodies" "$templates")"
    else
      event_bytes="$(node "$repo/bench/ingest/make_templates.mjs" "$route" "$dir/bodies" "$templates" "$token" "$nonce")"
    fi
    port="$(free_port)"
    start_server "$dir/data" "$dir/keys" "$port" "$log"

    server_ticks_before="$(cpu_ticks "$server_pid")"
    window_acked=""
    run_driver "$route" "$dir/bodies" "$port" "$secret"
    server_cpu="$(awk -v a="$server_ticks_before" -v b="$(cpu_ticks "$server_pid")" -v hz="$(getconf CLK_TCK)" -v w="$wall" \
      'BEGIN { printf "%.0f", 100 * (b - a) / hz / w }')"

    rss_kib="$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")"
    accepted_live="$(metric "$port" minpanel_events_accepted_total)"
    # What the policy did, to show which of its parts the run exercised.
    generalised="$(metric "$port" minpanel_policy_context_fields_generalised_total)"
    redacted="$(metric "$port" minpanel_policy_values_redacted_total)"
    stop_server
    # What is on disk after a clean restart, not what was counted in memory.
    start_server "$dir/data" "$dir/keys" "$port" "$log"
    stored="$(metric "$port" minpanel_store_events)"
    exported="-"
    if [ "$export_check" = 1 ] && [ "$run" = 1 ]; then
      exported="$(curl -sf -u "$secret:" \
        "http://127.0.0.1:$port/api/2.0/export?from_date=$(date -u -d '-3 days' +%F)&to_date=$(date -u -d '+1 day' +%F)&reason=benchmark" | wc -l)"
    fi
    stop_server

    acked_events=$((acked_requests * batch))
    rate_requests="${window_acked:-$acked_requests}"
    events_per_s="$(awk -v r="$rate_requests" -v b="$batch" -v d="$duration_us" 'BEGIN { printf "%.0f", r * b / (d / 1e6) }')"
    requests_per_s="$(awk -v r="$rate_requests" -v d="$duration_us" 'BEGIN { printf "%.1f", r / (d / 1e6) }')"
    # A request sent but never answered (wrk: any request in flight when it
    # stops; loadgen: one cut off by an error or timeout) may be stored.
    in_flight_max=$((unanswered * batch))
    if [ "$stored" -lt "$acked_events" ] || [ "$stored" -gt $((acked_events + in_flight_max)) ]; then
      verdict="MISMATCH"
    elif [ "$exported" != "-" ] && [ "$exported" -ne "$stored" ]; then
      verdict="EXPORT-MISMATCH"
    else
      verdict="ok"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$route" "$run" "$events_per_s" "$requests_per_s" \
      "$p50_us" "$p99_us" "$rss_kib" "$acked_events" "$stored" "$exported" "$refused" "$verdict" "$event_bytes" >>"$results"
    echo "# $route run $run: $events_per_s events/s ($requests_per_s req/s x $batch), p50 ${p50_us}us p99 ${p99_us}us," \
      "peak RSS $((rss_kib / 1024)) MiB, CPU server ${server_cpu}% $driver ${driver_cpu}%, acked $acked_events, counted live $accepted_live, stored $stored," \
      "exported $exported, refused $refused, errors $errors, unanswered $unanswered," \
      "policy generalised $generalised redacted $redacted, $verdict" >&2
    rm -rf "$dir"
  done
done

table="$(
  echo "| route | batch | events/s (median of $runs) | requests/s | p50 latency | p99 latency | server peak RSS | stored vs acknowledged |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  for route in $routes; do
    case "$route" in
      track) batch=50; body="form data=base64"; label=/track ;;
      segment) batch=15; body="analytics-node's JSON, Basic write key"; label=/v1/batch ;;
      posthog) batch=20; body="posthog-node's JSON, api_key in the body"; label=/batch/ ;;
      plausible) batch=1; body="plausible-tracker JSON as text/plain"; label=/api/event ;;
      *) batch=2000; body="JSON array, Basic auth"; label="/$route" ;;
    esac
    rows="$(awk -F'\t' -v r="$route" '$1 == r' "$results")"
    eps="$(cut -f3 <<<"$rows" | median)"
    rps="$(cut -f4 <<<"$rows" | median)"
    p50="$(cut -f5 <<<"$rows" | median)"
    p99="$(cut -f6 <<<"$rows" | median)"
    rss="$(cut -f7 <<<"$rows" | median)"
    bytes="$(cut -f13 <<<"$rows" | head -1)"
    verdicts="$(cut -f12 <<<"$rows" | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }')"
    printf '| %s (%s, ~%s B/event) | %s | %s | %s | %s ms | %s ms | %s MiB | %s |\n' "$label" "$body" "$bytes" "$batch" \
      "$(printf "%'d" "$eps")" "$rps" "$(awk -v u="$p50" 'BEGIN { printf "%.1f", u / 1000 }')" \
      "$(awk -v u="$p99" 'BEGIN { printf "%.1f", u / 1000 }')" "$(awk -v k="$rss" 'BEGIN { printf "%.0f", k / 1024 }')" "$verdicts"
  done
)"
echo "$table"
if [ -n "$out" ]; then
  echo "$table" >"$out"
fi
if grep -q MISMATCH "$results"; then
  echo "ingest.sh: stored events do not match acknowledged ones" >&2
  exit 1
fi
