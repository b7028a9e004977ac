#!/usr/bin/env bash
# Times `minpanel incident crossref` on generated data (bench/incident_generate.mjs:
# made-up people only, written as it is drawn: 10M x 10M fits): ACCOUNTS
# accounts, LEAKED leaked rows, RUNS runs; prints each run's phases (reading
# the accounts and orgs, the leaked file's first reading (the recognition
# sample, read beside the accounts since 8bbb45b) and second (scan and
# match; the accounts' index before it and Finish after it apart),
# writing, impact.json's size), total, the process's CPU time
# (user + sys, and each) and peak resident memory, then the medians.
# Notices are off (--no-notices) unless NOTICES=1, so the number is the
# cross-reference itself.
#
#   bench/incident_bench.sh BUILD_DIR [ACCOUNTS] [LEAKED] [RUNS]
#   bench/incident_bench.sh build 10000000 10000000 3
# BUILD_DIR may also be a minpanel binary (a copy of an older build), so
# that old and new can be run in turn in the same minutes:
#   for i in 1 2 3; do for b in old/minpanel new/minpanel; do
#     bench/incident_bench.sh $b 1000000 1000000 1; done; done
set -euo pipefail

build="${1:?usage: $0 BUILD_DIR [ACCOUNTS] [LEAKED] [RUNS]}"
accounts="${2:-1000000}"
leaked="${3:-1000000}"
runs="${4:-3}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="${build}/apps/minpanel/minpanel"
[[ -f "${build}" ]] && binary="${build}"
data="${TMPDIR:-/tmp}/minpanel-incident-bench-${accounts}-${leaked}"
if [[ ! -f "${data}/truth.json" ]]; then
  node "${root}/bench/incident_generate.mjs" --out "${data}" --accounts "${accounts}" --leaked "${leaked}"
fi
notices=(--no-notices)
[[ "${NOTICES:-0}" == 1 ]] && notices=()
totals=()
cpus=()
rss=()
for run in $(seq 1 "${runs}"); do
  out="$(mktemp -d)/out"
  log="$(mktemp)"
  /usr/bin/time -f "peak_rss_kb %M cpu_s %U %S" "${binary}" incident crossref --leaked "${data}/leaked.csv" \
    --accounts "${data}/accounts.csv" --orgs "${data}/orgs.csv" --out "${out}" \
    --company "Bench Ltd" --domain example.com "${notices[@]}" 2>"${log}"
  total="$(grep -oE 'total [0-9.]+ s' "${log}" | grep -oE '[0-9.]+')"
  seconds() { grep -E "$1" "${log}" | head -1 | grep -oE '[0-9.]+ s\)' | grep -oE '[0-9.]+'; }
  rss_kb="$(grep -oE 'peak_rss_kb [0-9]+' "${log}" | grep -oE '[0-9]+')"
  cpu="$(grep -oE 'cpu_s [0-9.]+ [0-9.]+' "${log}" | awk '{printf "%.2f", $2 + $3}')"
  cpu_split="$(grep -oE 'cpu_s [0-9.]+ [0-9.]+' "${log}" | awk '{printf "user %.2f + sys %.2f", $2, $3}')"
  impact_bytes="$(stat -c %s "${out}/impact.json")"
  echo "run ${run}: accounts read $(seconds '^accounts:') s, orgs read $(seconds '^orgs:') s," \
    "accounts+orgs recognised $(seconds 'accounts and orgs columns') s," \
    "leaked 1st reading $(seconds 'first reading') s, 2nd reading (scan + match) $(seconds 'second reading') s" \
    "(index $(grep -oE "accounts' index [0-9.]+" "${log}" | grep -oE '[0-9.]+') s," \
    "finish $(grep -oE 'file order [0-9.]+' "${log}" | grep -oE '[0-9.]+') s)," \
    "write $(seconds '^wrote') s (impact.json ${impact_bytes} bytes), total ${total} s," \
    "CPU ${cpu} s (${cpu_split}), peak RSS $((rss_kb / 1024)) MiB," \
    "load $(cut -d' ' -f1 /proc/loadavg)"
  # Every count against the generator's ground truth.
  node -e '
    const truth = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const line = process.argv[2];
    const got = (re) => Number((line.match(re) ?? [])[1]);
    const pairs = [["affected accounts", got(/(\d+) affected accounts/), truth.affected_accounts.length],
      ["organisations", got(/(\d+) organisations/), truth.affected_orgs.length],
      ["matched rows", got(/(\d+) matched \+/), truth.matched_rows],
      ["org only rows", got(/(\d+) org only/), truth.org_only_rows],
      ["unmatched rows", got(/(\d+) unmatched/), truth.unmatched_rows],
      ["rejected rows", got(/(\d+) rejected/), truth.rejected]];
    const wrong = pairs.filter(([, a, b]) => a !== b);
    if (wrong.length > 0) { console.error("counts differ from the truth:", JSON.stringify(wrong)); process.exit(1); }
    console.log("  counts = truth: " + pairs.map(([name, value]) => `${value} ${name}`).join(", "));
  ' "${data}/truth.json" "$(grep -E '^matched' "${log}")"
  totals+=("${total}")
  cpus+=("${cpu}")
  rss+=("${rss_kb}")
  rm -rf "$(dirname "${out}")" "${log}"
done
printf '%s\n' "${totals[@]}" | sort -n | awk '{a[NR]=$1} END {print "median total " a[int((NR+1)/2)] " s over " NR " runs"}'
printf '%s\n' "${cpus[@]}" | sort -n | awk '{a[NR]=$1} END {print "median CPU (user + sys) " a[int((NR+1)/2)] " s"}'
printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END {printf "peak RSS %d to %d MiB\n", a[1] / 1024, a[NR] / 1024}'
