#!/usr/bin/env bash
# What recording each subject's keys in an export's subject file costs
# (docs/benchmarks.md, "Per-subject fields in subject files"): two binaries
# side by side — OLD writing version-1 subject files (pseudonyms only) and
# NEW writing version 2 (each subject's keys) — run `minpanel export` of the
# same data folder in alternating order, ROUNDS times each, with decoys (an
# access key's export path: watcher, decoy filter, subject file). Reports
# per binary the process's CPU time (user + system) and wall time, medians,
# and the size of the subject file each export wrote.
#
#   bench/audit_subjects.sh OLD_BINARY NEW_BINARY [EVENTS] [ROUNDS]
#
# The data is bench/audit_export.sh's (5,000 synthetic users gen-N over 7
# days, five event names, plan and price), except that keys vary between
# rows as they do in real exports: price only on purchases, a coupon on one
# purchase in 7, a referrer on one page view in 3 — so subjects differ in
# their key sets. Generated data only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/audit_data.sh"
old="$1"; new="$2"; events="${3:-100000}"; rounds="${4:-5}"
bench_audit_folder
"${new}" project create bench --data "${folder}/data" --keys "${folder}/keys" --json >/dev/null
bench_audit_week
# Keys that vary between rows, as in real exports.
bench_audit_import "${new}" "${events}" '
  const properties = { distinct_id: user, time, $insert_id: "b" + id_hex,
    plan: ["free", "pro", "team"][i % 3] };
  if (name === "purchase") { properties.price = i % 100; if (i % 7 === 0) properties.coupon = "c" + (i % 11); }
  if (name === "page_view" && i % 3 === 0) properties.referrer_host = "ref" + (i % 13) + ".example";
  return properties;'
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "${old}" "${new}" "${folder}" "${from_date}" "${to_date}" "${rounds}" <<'PY'
import os, resource, statistics, subprocess, sys, time
old, new, folder, from_date, to_date, rounds = sys.argv[1:6] + [int(sys.argv[6])]
subjects = folder + '/data/audit/subjects'
runs = {'old (version 1)': [], 'new (version 2)': []}
for round_idx in range(rounds):
    order = [('old (version 1)', old), ('new (version 2)', new)]
    for name, binary in (order if round_idx % 2 == 0 else order[::-1]):
        before_files = set(os.listdir(subjects)) if os.path.isdir(subjects) else set()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        out = subprocess.run([binary, 'export', '--project', 'bench', '--from', from_date, '--to', to_date,
                              '--data', folder + '/data', '--keys', folder + '/keys'],
                             stdout=subprocess.PIPE, check=True).stdout
        wall_ms = (time.monotonic() - started) * 1000
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_ms = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
        written = sorted(set(os.listdir(subjects)) - before_files)
        size = sum(os.path.getsize(os.path.join(subjects, f)) for f in written)
        runs[name].append((wall_ms, cpu_ms, out.count(b'\n'), size))
for name, results in runs.items():
    print(f'minpanel export of the week, {name}: {results[0][2]} rows, subject file {results[0][3]} bytes, '
          f'CPU (user+sys) median {statistics.median(r[1] for r in results):.0f} ms '
          f'(runs {", ".join(f"{r[1]:.0f}" for r in results)}), wall median '
          f'{statistics.median(r[0] for r in results):.0f} ms, {len(results)} runs')
PY
last="$(ls -t "${folder}/data/audit/subjects" | head -1)"
echo "the last subject file's head:"; head -c 600 "${folder}/data/audit/subjects/${last}" | sed 's/^/  /'
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
