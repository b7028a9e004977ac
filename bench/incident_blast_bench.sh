#!/usr/bin/env bash
# Times `minpanel incident blast-radius` over a generated year of audit log
# (bench/incident_blast_generate.mjs: RECORDS records, 200 keys, 2 % exports
# with 200 subjects each; made-up pseudonyms only) for the first key over the
# whole year, RUNS times; prints each run's time to read the log (chain
# verified, every record hashed), its total, the peak resident memory, and
# the medians; checks the counts against the generator's truth.
#
#   bench/incident_blast_bench.sh BUILD_DIR [RECORDS] [RUNS]
#   bench/incident_blast_bench.sh build-h6 3650000 3
set -euo pipefail

build="${1:?usage: $0 BUILD_DIR [RECORDS] [RUNS]}"
records="${2:-3650000}"
runs="${3:-3}"
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
reads=()
totals=()
for run in $(seq 1 "${runs}"); do
  # A copy of the audit folder, so that the run's own record (the command
  # records itself) never changes the next run's input.
  work="$(mktemp -d)"
  mkdir -p "${work}/data"
  cp -r "${data}/audit" "${work}/data/audit"
  start_ns="$(date +%s%N)"
  /usr/bin/time -f "peak_rss_kb %M" "${binary}" incident blast-radius --key "${key}" --from "${from}" \
    --to "${to}" --data "${work}/data" --keys "${work}/keys" --out "${work}/out" \
    --company "Bench Ltd" --domain example.com --no-notices 2>"${work}/log"
  end_ns="$(date +%s%N)"
  read_s="$(grep -oE 'audit log read \([0-9.]+ s\)' "${work}/log" | grep -oE '[0-9.]+')"
  total_s="$(awk -v a="${start_ns}" -v b="${end_ns}" 'BEGIN {printf "%.2f", (b - a) / 1e9}')"
  subjects="$(node -e "process.stdout.write(String(JSON.parse(require('fs').readFileSync(process.argv[1])).counts.subjects))" "${work}/out/blast-radius.json")"
  if [[ "${subjects}" != "$(field "${truth}" subjects)" ]]; then
    echo "run ${run}: ${subjects} subjects, the generator says $(field "${truth}" subjects)" >&2
    exit 1
  fi
  echo "run ${run}: read ${read_s} s, total ${total_s} s, $(grep peak_rss "${work}/log"), subjects ${subjects} (= truth)"
  reads+=("${read_s}")
  totals+=("${total_s}")
  rm -rf "${work}"
done
printf '%s\n' "${reads[@]}" | sort -n | awk '{a[NR]=$1} END {print "median read " a[int((NR+1)/2)] " s over " NR " runs"}'
printf '%s\n' "${totals[@]}" | sort -n | awk '{a[NR]=$1} END {print "median total " a[int((NR+1)/2)] " s over " NR " runs"}'
