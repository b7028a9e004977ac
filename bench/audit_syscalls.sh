#!/usr/bin/env bash
# What the audit log does per query, counted by the kernel
# (docs/benchmarks.md, "Holding a sync for running reads"): makes a data
# folder of generated events (bench/lib/audit_data.sh), then each server
# SPEC in turn, ROUNDS times, serves QUERIES 8-client queries
# (bench/audit/load.mjs) under `perf stat -p` of the server; prints per
# query the context switches, futex calls, fdatasyncs and pwrites, the
# server's CPU, and the machine's idle CPU over the run.
#
#   bench/audit_syscalls.sh SPEC[,SPEC...] [EVENTS] [ROUNDS] [QUERIES]
#   bench/audit_syscalls.sh NOAUDIT,MAIN,MAIN@hold-500.toml 100000 2 20000
#
# SPEC: a minpanel binary, or BIN@FILE to serve with --config FILE. A
# binary without the audit log (bench/audit_noaudit_binary.sh) is started
# with MINPANEL_BENCH_NO_AUDIT=1, as bench/audit.sh does; every server's
# audit folder is beside the data folder (on disk), made anew each run.
# Needs perf (Debian: linux-perf) and the right to trace the server.
# Generated data only: synthetic users gen-N.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${repo}/bench/lib/audit_data.sh"
command -v perf >/dev/null || { echo "$0: needs perf (apt-get install linux-perf)" >&2; exit 2; }
IFS=',' read -r -a specs <<< "${1:?usage: $0 SPEC[,SPEC...] [EVENTS] [ROUNDS] [QUERIES]}"
events="${2:-100000}"; rounds="${3:-2}"; queries="${4:-20000}"
export MINPANEL_BENCH_NO_AUDIT=1
first_bin="${specs[0]%%@*}"
bench_audit_folder
secret="$("${first_bin}" project create bench --data "${folder}/data" --keys "${folder}/keys" --json |
  bench_json_field secret)"
bench_audit_week
bench_audit_import "${first_bin}" "${events}"
cpu_counts() { head -1 /proc/stat; }  # cpu user nice system idle iowait ...
for round in $(seq "${rounds}"); do
  for spec in "${specs[@]}"; do
    bin="${spec%%@*}"; config=()
    [[ "${spec}" == *@* ]] && config=(--config "${spec#*@}")
    rm -rf "${folder}/data/audit" "${folder}/audit-disk"
    mkdir "${folder}/audit-disk"
    ln -s "${folder}/audit-disk" "${folder}/data/audit"
    port=$(( 20000 + RANDOM % 20000 ))
    "${bin}" serve "${config[@]}" --data "${folder}/data" --keys "${folder}/keys" \
      --listen "127.0.0.1:${port}" 2>/dev/null &
    server=$!
    for _ in $(seq 200); do
      curl -sf -o /dev/null "http://127.0.0.1:${port}/healthz" && break
      sleep 0.05
    done
    node "${repo}/bench/audit/load.mjs" "${port}" "${secret}" "${from_date}" "${to_date}" 400 8 >/dev/null
    perf stat -x, -e task-clock,context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64 \
      -p "${server}" -o "${folder}/stat.csv" &
    perf_pid=$!
    sleep 0.3
    read -r _ u1 n1 s1 i1 w1 _ <<< "$(cpu_counts)"
    rate="$(node "${repo}/bench/audit/load.mjs" "${port}" "${secret}" "${from_date}" "${to_date}" "${queries}" 8)"
    read -r _ u2 n2 s2 i2 w2 _ <<< "$(cpu_counts)"
    kill -INT "${perf_pid}"; wait "${perf_pid}" || true
    kill "${server}"; wait "${server}" || true
    idle=$(( 100 * (i2 - i1 + w2 - w1) / (u2 - u1 + n2 - n1 + s2 - s1 + i2 - i1 + w2 - w1 + 1) ))
    awk -F, -v n="${queries}" -v head="round ${round} ${spec}: ${rate}, idle ${idle} %" '
      $3 == "task-clock" { cpu = $1 * 1000 / n }
      $3 == "context-switches" { cs = $1 / n }
      $3 ~ /futex/ { futex = $1 / n }
      $3 ~ /fdatasync/ { sync = $1 / n }
      $3 ~ /pwrite64/ { pwrite = $1 / n }
      END { printf "%s; per query: server CPU %.1f us, context switches %.2f, futex %.2f, fdatasync %.3f, pwrite %.3f\n", head, cpu, cs, futex, sync, pwrite }' \
      "${folder}/stat.csv"
  done
done
