#!/usr/bin/env bash
# Old against new minpanel binaries on the query benchmark, interleaved on one
# data folder (the machine is shared, so runs of one binary after the other
# would measure the load as much as the code). See docs/benchmarks.md,
# "Engine changes for the query-speed issue".
#
# Usage: bench/query/compare.sh --bins OLD,NEW [--events N] [--rounds R]
#                               [--runs K] [--folder DIR] [--seed S]
#        --bins      comma-separated minpanel binaries (each must read the
#                    segments the first one writes)
#        --events N  events generated (default 1000000)
#        --rounds R  rounds; in each, every binary serves the folder in turn
#                    and answers the five queries (one warm-up, K timed runs)
#                    (default 3)
#        --folder    data folder, kept between calls: made and imported with
#                    the first binary when missing (default
#                    var/bench-query-compare/N)
# Prints, per query and binary, the median of all timed runs of all rounds,
# and checks that every binary's answers equal the first one's (exit 1 if
# not). Results: FOLDER/results/round-R-B.json.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
events=1000000
rounds=3
runs=5
seed=1
bins=""
folder=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bins) bins="$2"; shift 2 ;;
    --events) events="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --folder) folder="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$bins" ] || { echo "compare.sh: --bins OLD,NEW is required" >&2; exit 2; }
IFS=',' read -r -a bin_list <<<"$bins"
folder="${folder:-$repo/var/bench-query-compare/$events}"
runner="$repo/bench/query/run.mjs"
generator="$repo/build-bench/bench/gen_events"
from_ms=1790812800000
to_ms=$((from_ms + 30 * 86400000))
log() { echo "compare.sh: $*" >&2; }

[ -x "$generator" ] || { log "no $generator: run bench/query.sh once (it builds gen_events)"; exit 1; }
sources=(--data "$folder/data" --keys "$folder/keys")
if [ ! -f "$folder/secret" ]; then
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
secret="$(cat "$folder/secret")"
mkdir -p "$folder/results"
rm -f "$folder"/results/*.json

serve_and_query() {
  local bin="$1" out="$2" port pid waited=0
  port="$(node -e "const s = require('node:net').createServer().listen(0, '127.0.0.1', () => {
    console.log(s.address().port); s.close(); })")"
  "$bin" serve "${sources[@]}" --listen "127.0.0.1:$port" >"$folder/serve.log" 2>&1 &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$waited" -ge 1200 ]; then
      log "$bin did not answer /healthz; see $folder/serve.log"
      kill "$pid" 2>/dev/null || true
      exit 1
    fi
    sleep 0.05
    waited=$((waited + 1))
  done
  node "$runner" query --engine minpanel --url "http://127.0.0.1:$port" --secret "$secret" \
    --from-ms "$from_ms" --to-ms "$to_ms" --users "$folder/users.txt" --runs "$runs" \
    --out "$out" 2>/dev/null || { kill "$pid"; wait "$pid" || true; exit 1; }
  kill -TERM "$pid"
  wait "$pid" || true
}

for ((round = 0; round < rounds; ++round)); do
  for bin_idx in "${!bin_list[@]}"; do
    serve_and_query "${bin_list[$bin_idx]}" "$folder/results/round-$round-$bin_idx.json"
  done
  log "round $((round + 1)) of $rounds done"
done

node --input-type=module -e "
  import { readFileSync } from 'node:fs';
  const bins = process.argv[1].split(',');
  const rounds = Number(process.argv[2]);
  const dir = process.argv[3];
  const median = (values) => {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  };
  const results = bins.map((_, b) => [...Array(rounds).keys()].map((r) =>
    JSON.parse(readFileSync(dir + '/round-' + r + '-' + b + '.json', 'utf8'))));
  let disagree = 0;
  const header = ['query', ...bins.map((bin, b) => 'binary ' + b + ' ms'), 'last / first'];
  console.log('| ' + header.join(' | ') + ' |');
  console.log('|' + header.map(() => ' --- |').join(''));
  for (const [q, first] of results[0][0].results.entries()) {
    const medians = results.map((rounds) => median(rounds.flatMap((r) => r.results[q].times_ms)));
    for (const rounds of results) {
      for (const r of rounds) {
        if (JSON.stringify(r.results[q].canon) !== JSON.stringify(first.canon)) {
          ++disagree;
          console.error('DISAGREE ' + first.name);
        }
      }
    }
    console.log('| ' + [first.name, ...medians.map((m) => m.toFixed(1)),
      (medians[medians.length - 1] / medians[0]).toFixed(2)].join(' | ') + ' |');
  }
  bins.forEach((bin, b) => console.log('binary ' + b + ': ' + bin));
  process.exit(disagree ? 1 : 0);
" "$bins" "$rounds" "$folder/results"
