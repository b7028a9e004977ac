#!/usr/bin/env bash
# Times `minpanel incident blast-radius` over a generated year of audit log
# (bench/incident_blast_generate.mjs: RECORDS records, 200 keys, 2 % exports
# with 200 subjects each; made-up pseudonyms only) for the first key over the
# whole year, RUNS times in each of three modes — `full` (--verify-chain:
# every record hashed, every anchor matched), `index-cold` (the key index
# made during the run) and `index-warm` (the index already there) — and
# prints each run's time to read the log (the blast radius itself), its
# total (with opening the log to record the run), the peak resident memory,
# and the medians per mode; checks the counts against the generator's truth.
#
# Two more modes measure the blast radius right after a long stretch of
# appends (STRETCH records, default 365,000: about a month of this log)
# made through the real appender (bench/audit_append.cc, built with
# -DMINPANEL_BENCH=ON) on top of the indexed year, with the log still held
# open as by a running server (so the run is not recorded: `total` is the
# command without it): `stretch-unkept` with the appender keeping no index
# (as before the log kept it: the run walks the whole stretch) and
# `stretch-kept` with the log keeping it (audit::kIndexUpdateRecords).
# MODES chooses the modes (default: all five).
#
#   bench/incident_blast_bench.sh BUILD_DIR [RECORDS] [RUNS]
#   bench/incident_blast_bench.sh build-h6 3650000 3
#   MODES="stretch-unkept stretch-kept" bench/incident_blast_bench.sh build 3650000 3
set -euo pipefail

build="${1:?usage: $0 BUILD_DIR [RECORDS] [RUNS]}"
records="${2:-3650000}"
runs="${3:-3}"
stretch="${STRETCH:-365000}"
modes="${MODES:-full index-cold index-warm stretch-unkept stretch-kept}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="${build}/apps/minpanel/minpanel"
data="${TMPDIR:-/tmp}/minpanel-blast-bench-${records}"
if [[ ! -f "${data}/truth.json" ]]; then
  node "${root}/bench/incident_blast_generate.mjs" --out "${data}" --records "${records}"
fi
truth="$(cat "${data}/truth.json")"
field() { node -e "process.stdout.write(String(JSON.parse(process.argv[1])[process.argv[2]]))" "$1" "$2"; }
key="$(field "${truth}" key)"
from="$(node -e "process.stdout.write(new Date(Math.floor($(field "${truth}" from_ms) / 1000) * 1000).toISOString())")"
to="$(node -e "process.stdout.write(new Date(Math.ceil($(field "${truth}" to_ms) / 1000) * 1000).toISOString())")"
echo "log: $(field "${truth}" records) records, $(field "${truth}" log_bytes) bytes; key ${key}: $(field "${truth}" exports) exports, $(field "${truth}" subjects) subjects"
# One timed run of MODE over a copy of SOURCE (an audit folder), so that
# the run's own record (the command records itself) and the index it
# writes never change the next run's input.
run_once() {
  local mode="$1" source="$2" run="$3"
  shift 3
  local work
  work="$(mktemp -d)"
  mkdir -p "${work}/data"
  cp -r "${source}" "${work}/data/audit"
  # The copy written out first: else the run's own record's fdatasync
  # flushes the whole copied log (about 0.5 s of `total` on this machine).
  sync "${work}/data/audit/log"
  # A stretch of appends through the real appender, the log held open
  # (by a FIFO on its standard input) while the blast radius runs.
  local appender="" held=""
  if [[ "${mode}" == stretch-* ]]; then
    mkfifo "${work}/hold"
    local index_flag=""
    [[ "${mode}" == stretch-unkept ]] && index_flag="--no-index"
    "${build}/bench/audit_append" "${work}/data/audit" "${stretch}" ${index_flag} \
      <"${work}/hold" >"${work}/append" &
    appender=$!
    exec {held}>"${work}/hold"
    until grep -q appended "${work}/append" 2>/dev/null; do sleep 0.2; done
  fi
  local start_ns end_ns
  start_ns="$(date +%s%N)"
  /usr/bin/time -f "peak_rss_kb %M" "${binary}" incident blast-radius --key "${key}" --from "${from}" \
    --to "${to}" --data "${work}/data" --keys "${work}/keys" --out "${work}/out" \
    --company "Bench Ltd" --domain example.com --no-notices "$@" 2>"${work}/log"
  end_ns="$(date +%s%N)"
  if [[ -n "${appender}" ]]; then
    exec {held}>&-
    wait "${appender}"
    echo "  appender: $(tr '\n' ' ' <"${work}/append")"
  fi
  local read_s total_s subjects chain_mode
  read_s="$(grep -oE 'audit log read \([0-9.]+ s\)' "${work}/log" | grep -oE '[0-9.]+')"
  total_s="$(awk -v a="${start_ns}" -v b="${end_ns}" 'BEGIN {printf "%.2f", (b - a) / 1e9}')"
  subjects="$(node -e "process.stdout.write(String(JSON.parse(require('fs').readFileSync(process.argv[1])).counts.subjects))" "${work}/out/blast-radius.json")"
  chain_mode="$(node -e "const c = JSON.parse(require('fs').readFileSync(process.argv[1])).chain; process.stdout.write(c.mode + ', ' + c.records_walked + ' records walked' + (c.index_rebuilt ? ', index rebuilt' : ''))" "${work}/out/blast-radius.json")"
  if [[ "${subjects}" != "$(field "${truth}" subjects)" ]]; then
    echo "${mode} run ${run}: ${subjects} subjects, the generator says $(field "${truth}" subjects)" >&2
    exit 1
  fi
  echo "${mode} run ${run}: read ${read_s} s, total ${total_s} s, $(grep peak_rss "${work}/log"), subjects ${subjects} (= truth), chain ${chain_mode}"
  reads+=("${read_s}")
  totals+=("${total_s}")
  rm -rf "${work}"
}

median() {
  printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# The modes: the whole chain walked (--verify-chain); the key index made
# during the run (no index yet: a first run); the key index already there
# (every later run: only the records appended since are walked).
indexed="${data}/audit-indexed"
if [[ ! -d "${indexed}" ]]; then
  prepare="$(mktemp -d)"
  mkdir -p "${prepare}/data"
  cp -r "${data}/audit" "${prepare}/data/audit"
  "${binary}" incident blast-radius --key "${key}" --from "${from}" --to "${to}" \
    --data "${prepare}/data" --keys "${prepare}/keys" --out "${prepare}/out" \
    --company "Bench Ltd" --domain example.com --no-notices 2>/dev/null
  mv "${prepare}/data/audit" "${indexed}"
  rm -rf "${prepare}"
fi
summary=()
for mode in ${modes}; do
  reads=()
  totals=()
  for run in $(seq 1 "${runs}"); do
    case "${mode}" in
      full) run_once "${mode}" "${data}/audit" "${run}" --verify-chain ;;
      index-cold) run_once "${mode}" "${data}/audit" "${run}" ;;
      index-warm | stretch-unkept | stretch-kept) run_once "${mode}" "${indexed}" "${run}" ;;
    esac
  done
  summary+=("${mode}: median read $(median "${reads[@]}") s, median total $(median "${totals[@]}") s over ${runs} runs")
done
printf '%s\n' "${summary[@]}"
