#!/usr/bin/env bash
# Times `minpanel incident crossref` on generated data (bench/incident_generate.mjs:
# made-up people only): ACCOUNTS accounts, LEAKED leaked rows, RUNS runs; prints
# each run's phases (read, recognise, match, write) and total, the medians,
# and the peak resident memory. Notices are off (--no-notices) unless
# NOTICES=1, so the number is the cross-reference itself.
#
#   bench/incident_bench.sh BUILD_DIR [ACCOUNTS] [LEAKED] [RUNS]
#   bench/incident_bench.sh build-h4 1000000 1000000 3
set -euo pipefail

build="${1:?usage: $0 BUILD_DIR [ACCOUNTS] [LEAKED] [RUNS]}"
accounts="${2:-1000000}"
leaked="${3:-1000000}"
runs="${4:-3}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="${build}/apps/minpanel/minpanel"
data="${TMPDIR:-/tmp}/minpanel-incident-bench-${accounts}-${leaked}"
if [[ ! -f "${data}/truth.json" ]]; then
  node "${root}/bench/incident_generate.mjs" --out "${data}" --accounts "${accounts}" --leaked "${leaked}"
fi
notices=(--no-notices)
[[ "${NOTICES:-0}" == 1 ]] && notices=()
totals=()
for run in $(seq 1 "${runs}"); do
  out="$(mktemp -d)/out"
  log="$(mktemp)"
  /usr/bin/time -f "peak_rss_kb %M" "${binary}" incident crossref --leaked "${data}/leaked.csv" \
    --accounts "${data}/accounts.csv" --orgs "${data}/orgs.csv" --out "${out}" \
    --company "Bench Ltd" --domain example.com "${notices[@]}" 2>"${log}"
  total="$(grep -oE 'total [0-9.]+ s' "${log}" | grep -oE '[0-9.]+')"
  echo "run ${run}: $(grep -E 'rows read|recognised|matched \(|wrote|peak_rss' "${log}" | sed -E 's/:.*\(([^)]*)\).*/: \1/' | tr '\n' ' ')"
  totals+=("${total}")
  rm -rf "$(dirname "${out}")" "${log}"
done
printf '%s\n' "${totals[@]}" | sort -n | awk '{a[NR]=$1} END {print "median total " a[int((NR+1)/2)] " s over " NR " runs"}'
