#!/usr/bin/env bash
# Dashboard benchmark over a large data folder (issue 9; docs/benchmarks.md,
# "Dashboard"): N generated events (bench/query/gen_events, the query
# benchmark's workload: 30 days from 2026-10-01) imported by `minpanel
# import` into var/bench-dashboard/N (kept: the import is the slow part),
# then web/bench/breakdown.mjs in real Chromium against `minpanel serve` on
# that folder: the first load, and each change of the Insights breakdown
# timed as query and render.
#
# Usage: bench/dashboard.sh [--events N] [--runs K] [--nice] [--reload] [--load-only]
#        --events N  events generated (default 10000000); users = N / 100
#        --runs K    passes over the breakdowns (default 5)
#        --nice      generate and import under `nice -n 19` (a shared machine)
#        --reload    drop the folder and import again
#        --load-only generate and import, measure nothing (then run again,
#                    in a quiet window: the folder is kept)
# Env:   MINPANEL_BIN (default build/apps/minpanel/minpanel)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
events=10000000
runs=5
nice_cmd=()
reload=0
load_only=0
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --nice) nice_cmd=(nice -n 19); shift ;;
    --reload) reload=1; shift ;;
    --load-only) load_only=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "dashboard.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
minpanel_bin="${MINPANEL_BIN:-$repo/build/apps/minpanel/minpanel}"
folder="$repo/var/bench-dashboard/$events"
generator="$repo/build-bench/bench/gen_events"
log() { echo "dashboard.sh: $*" >&2; }

[ -x "$minpanel_bin" ] || { log "no binary at $minpanel_bin (make build, or set MINPANEL_BIN)"; exit 1; }
mkdir -p "$repo/build-bench"
if [ ! -f "$repo/build-bench/build.ninja" ]; then
  cmake -S "$repo" -B "$repo/build-bench" -G Ninja -DMINPANEL_BENCH=ON -DMINPANEL_TESTS=OFF \
    -DCMAKE_BUILD_TYPE=Release >"$repo/build-bench/gen_events-build.log" 2>&1 ||
    { log "configuring build-bench failed; see build-bench/gen_events-build.log"; exit 1; }
fi
cmake --build "$repo/build-bench" --target gen_events -j2 >>"$repo/build-bench/gen_events-build.log" 2>&1 ||
  { log "building gen_events failed; see build-bench/gen_events-build.log"; exit 1; }

[ "$reload" = 0 ] || rm -rf "$folder"
sources=(--data "$folder/data" --keys "$folder/keys")
if [ ! -f "$folder/secret" ]; then
  rm -rf "$folder"
  mkdir -p "$folder/data/policies" "$folder/keys"
  chmod 700 "$folder/keys"
  "$minpanel_bin" project create bench "${sources[@]}" --json |
    node -e "let s = ''; process.stdin.on('data', (d) => s += d).on('end', () =>
      console.log(JSON.parse(s.trim().split('\n').pop()).secret))" >"$folder/secret.tmp"
  # The query benchmark's policy: every generated property kept as sent.
  cp "$repo/bench/query/minpanel-policy.toml" "$folder/data/policies/bench.toml"
  parts=$(((events + 4999999) / 5000000))
  started="$(date +%s.%N)"
  for ((part = 0; part < parts; ++part)); do
    file="$folder/part-$part.jsonl"
    "${nice_cmd[@]}" "$generator" --events "$events" --seed 1 --format mixpanel --part "$part/$parts" >"$file"
    "${nice_cmd[@]}" "$minpanel_bin" import "${sources[@]}" --project bench "$file" >>"$folder/import.log" 2>&1 ||
      { log "import of part $part failed; see $folder/import.log"; exit 1; }
    rm -f "$file" "$file".*
  done
  log "generated and imported $events events in $(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s"
  mv "$folder/secret.tmp" "$folder/secret"
fi

[ "$load_only" = 0 ] || exit 0
MINPANEL_BIN="$minpanel_bin" node "$repo/web/bench/breakdown.mjs" "${sources[@]}" \
  --secret "$(cat "$folder/secret")" --runs "$runs"
