#!/usr/bin/env bash
# Old against new minpanel binaries on the query benchmark, interleaved on one
# data folder (the machine is shared, so runs of one binary after the other
# would measure the load as much as the code). See docs/benchmarks.md,
# "Engine changes for the query-speed issue" and "Server CPU per query".
#
# Usage: bench/query/compare.sh --bins OLD,NEW [--events N] [--rounds R]
#                               [--runs K] [--folder DIR] [--seed S]
#                               [--serve-folders DIR,DIR,...]
#        --bins      comma-separated minpanel binaries (each must read the
#                    segments the first one writes); one binary is allowed
#        --events N  events generated (default 1000000)
#        --rounds R  rounds; in each, every binary serves the folder in turn
#                    and answers the five queries (one warm-up, K timed runs)
#                    (default 3)
#        --folder    data folder, kept between calls: made and imported with
#                    the first binary when missing (default
#                    var/bench-query-compare/N). An existing store works too
#                    (e.g. one bench/query.sh --keep made): DIR/data and
#                    DIR/keys as `serve` takes them, DIR/secret the project
#                    secret, DIR/users.txt the 1,000 ids (gen_events
#                    --sample-users 1000). The servers append audit records
#                    to it, so serve a copy of a folder others use.
#        --serve-folders  one existing store (laid out as above) per binary,
#                    in the order of --bins, instead of --folder for all:
#                    for a binary that writes a newer segment format than an
#                    older binary reads, each serving the same events as
#                    imported by itself. Results go to --folder (default:
#                    the first of these). Answers from different folders are
#                    compared as canonical answers, not byte for byte (an
#                    export carries each folder's own keyed pseudonyms).
# Prints, per query and binary, the medians over all timed runs of all rounds
# of the server's CPU time (user + system of every thread, read around each
# request: bench/query/run.mjs --server-pid) and of the wall time, and checks
# that every binary's answers equal the first one's byte for byte (exit 1 if
# not). Prints the load average before and after. Results:
# FOLDER/results/round-R-B.json.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
events=1000000
rounds=3
runs=5
seed=1
bins=""
folder=""
serve_folders=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bins) bins="$2"; shift 2 ;;
    --events) events="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --folder) folder="$2"; shift 2 ;;
    --serve-folders) serve_folders="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    -h|--help) sed -n '2,34p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$bins" ] || { echo "compare.sh: --bins OLD,NEW is required" >&2; exit 2; }
IFS=',' read -r -a bin_list <<<"$bins"
if [ -n "$serve_folders" ]; then
  folder="${folder:-${serve_folders%%,*}}"
fi
folder="${folder:-$repo/var/bench-query-compare/$events}"
runner="$repo/bench/query/run.mjs"
generator="$repo/build-bench/bench/gen_events"
from_ms=1790812800000
to_ms=$((from_ms + 30 * 86400000))
log() { echo "compare.sh: $*" >&2; }

sources=(--data "$folder/data" --keys "$folder/keys")
if [ -z "$serve_folders" ] && [ -e "$folder/data" ] && [ ! -f "$folder/secret" ]; then
  # Never remove a store this script did not make.
  log "$folder/data exists but $folder/secret does not: put the project secret there"
  exit 1
fi
if [ -z "$serve_folders" ] && [ ! -f "$folder/secret" ]; then
  [ -x "$generator" ] || { log "no $generator: run bench/query.sh once (it builds gen_events)"; exit 1; }
  rm -rf "$folder"
  mkdir -p "$folder/data/policies" "$folder/keys"
  chmod 700 "$folder/keys"
  "${bin_list[0]}" project create bench "${sources[@]}" --json |
    node -e "let s = ''; process.stdin.on('data', (d) => s += d).on('end', () =>
      console.log(JSON.parse(s.trim().split('\n').pop()).secret))" >"$folder/secret.tmp"
  cp "$repo/bench/query/minpanel-policy.toml" "$folder/data/policies/bench.toml"
  parts=$(((events + 4999999) / 5000000))
  for ((part = 0; part < parts; ++part)); do
    "$generator" --events "$events" --seed "$seed" --format mixpanel --part "$part/$parts" \
      >"$folder/part.jsonl"
    "${bin_list[0]}" import "${sources[@]}" --project bench "$folder/part.jsonl" \
      >>"$folder/import.log" 2>&1
    rm -f "$folder/part.jsonl" "$folder"/part.jsonl.*
  done
  "$generator" --events "$events" --seed "$seed" --sample-users 1000 >"$folder/users.txt"
  mv "$folder/secret.tmp" "$folder/secret"
  log "imported $events events into $folder"
fi
if [ -n "$serve_folders" ]; then
  IFS=',' read -r -a store_list <<<"$serve_folders"
  [ "${#store_list[@]}" -eq "${#bin_list[@]}" ] || { log "--serve-folders needs one folder per binary"; exit 2; }
  for store in "${store_list[@]}"; do
    [ -f "$store/secret" ] && [ -f "$store/users.txt" ] || { log "$store: no secret or users.txt"; exit 1; }
  done
else
  store_list=()
  for _ in "${bin_list[@]}"; do store_list+=("$folder"); done
fi
mkdir -p "$folder/results"
rm -f "$folder"/results/*.json

serve_and_query() {
  local bin="$1" store="$2" out="$3" port pid waited=0 secret
  port="$(node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => {
    console.log(s.address().port); s.close(); })")"
  secret="$(cat "$store/secret")"
  "$bin" serve --data "$store/data" --keys "$store/keys" --listen "127.0.0.1:$port" \
    >"$store/serve.log" 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$waited" -ge 1200 ]; then
      log "$bin did not answer /healthz; see $store/serve.log"
      kill "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.05
    waited=$((waited + 1))
  done
  node "$runner" query --engine minpanel --url "http://127.0.0.1:$port" --secret "$secret" \
    --from-ms "$from_ms" --to-ms "$to_ms" --users "$store/users.txt" --runs "$runs" \
    --server-pid "$pid" --out "$out" 2>/dev/null || { kill "$pid"; wait "$pid" || true; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || true
}

log "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
for ((round = 0; round < rounds; ++round)); do
  for bin_idx in "${!bin_list[@]}"; do
    serve_and_query "${bin_list[$bin_idx]}" "${store_list[$bin_idx]}" \
      "$folder/results/round-$round-$bin_idx.json"
  done
  log "round $((round + 1)) of $rounds done"
done
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"

node --input-type=module -e "
  import { readFileSync } from 'node:fs';
  const bins = process.argv[1].split(',');
  const rounds = Number(process.argv[2]);
  const dir = process.argv[3];
  const stores = process.argv[4].split(',');
  const median = (values) => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  };
  const results = bins.map((_, b) => [...Array(rounds).keys()].map((r) =>
    JSON.parse(readFileSync(dir + '/round-' + r + '-' + b + '.json', 'utf8'))));
  let disagree = 0;
  const ratio = (values) => (values[values.length - 1] / values[0]).toFixed(2);
  const columns = (what) => bins.map((_, b) => 'binary ' + b + ' ' + what);
  const header = ['query', ...columns('CPU ms'), 'CPU last / first', ...columns('wall ms'),
                  'wall last / first'];
  console.log('| ' + header.join(' | ') + ' |');
  console.log('|' + header.map(() => ' --- |').join(''));
  for (const [q, first] of results[0][0].results.entries()) {
    const wall = results.map((rounds) => median(rounds.flatMap((r) => r.results[q].times_ms)));
    const cpu = results.map((rounds) => median(rounds.flatMap((r) => r.results[q].cpu_ms)));
    for (const rounds of results) {
      for (const r of rounds) {
        const sameStore = stores[results.indexOf(rounds)] === stores[0];
        if ((sameStore && r.results[q].answer_sha256 !== first.answer_sha256) ||
            JSON.stringify(r.results[q].canon) !== JSON.stringify(first.canon)) {
          ++disagree;
          console.error('DISAGREE ' + first.name);
        }
      }
    }
    console.log('| ' + [first.name, ...cpu.map((m) => m.toFixed(1)), ratio(cpu),
      ...wall.map((m) => m.toFixed(1)), ratio(wall)].join(' | ') + ' |');
  }
  bins.forEach((bin, b) => console.log('binary ' + b + ': ' + bin + ' on ' + stores[b]));
  process.exit(disagree ? 1 : 0);
" "$bins" "$rounds" "$folder/results" "$(IFS=','; echo "${store_list[*]}")"
