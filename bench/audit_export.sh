#!/usr/bin/env bash
# What an access key's export costs over the project secret's — the
# watermark (decoys) and the key's export-history write — and what the
# project's minimum group size k costs a query (docs/benchmarks.md, "Audit
# log"). Makes a data folder of generated events (as bench/audit.sh does),
# an access key with the export scope and one with query:aggregate, then
# bench/audit/export_cost.mjs serves it with the key history on /dev/shm and
# on disk, times exports by the secret and by the key, and the aggregate
# key's queries with k = 0 and k = 5, in wall time and server CPU time;
# then the command line's export with and without decoys (the watermark
# alone, one principal; needs a binary with `minpanel export --no-watermark`).
#
#   bench/audit_export.sh BINARY [EVENTS] [ROUNDS] [REQUESTS] [BIG_REQUESTS]
#
# Generated data only: synthetic users gen-N.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${repo}/bench/lib/audit_data.sh"
bin="$1"; events="${2:-100000}"; rounds="${3:-3}"; requests="${4:-100}"; big_requests="${5:-10}"
bench_audit_folder
secret="$("${bin}" project create bench --data "${folder}/data" --keys "${folder}/keys" --json |
  bench_json_field secret)"
key_secret="$("${bin}" keys create --name bench-exporter --project bench --scope export --json \
  --data "${folder}/data" --keys "${folder}/keys" | bench_json_field secret)"
aggregate_secret="$("${bin}" keys create --name bench-analyst --project bench --scope query:aggregate --json \
  --data "${folder}/data" --keys "${folder}/keys" | bench_json_field secret)"
bench_audit_week
bench_audit_import "${bin}" "${events}"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
node "${repo}/bench/audit/export_cost.mjs" --bin "${bin}" --data "${folder}/data" \
  --keys "${folder}/keys" --secret "${secret}" --key-secret "${key_secret}" \
  --aggregate-secret "${aggregate_secret}" --project bench --rounds "${rounds}" \
  --requests "${requests}" --big-requests "${big_requests}" --from-date "${from_date}" --to-date "${to_date}"
# The watermark alone, for one principal: the command line's export of the
# whole week with decoys and with --no-watermark, in alternating order,
# ROUNDS times each; wall time and the process's CPU time (user + system).
python3 - "${bin}" "${folder}" "${from_date}" "${to_date}" "${rounds}" <<'PY'
import resource, statistics, subprocess, sys, time
binary, folder, from_date, to_date, rounds = sys.argv[1:5] + [int(sys.argv[5])]
runs = {'with decoys': [], 'with --no-watermark': []}
for round_idx in range(rounds):
    order = [('with decoys', []), ('with --no-watermark', ['--no-watermark'])]
    for name, extra in (order if round_idx % 2 == 0 else order[::-1]):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        out = subprocess.run([binary, 'export', '--project', 'bench', '--from', from_date, '--to', to_date,
                              *extra, '--data', folder + '/data', '--keys', folder + '/keys'],
                             stdout=subprocess.PIPE, check=True).stdout
        wall_ms = (time.monotonic() - started) * 1000
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_ms = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
        runs[name].append((wall_ms, cpu_ms, out.count(b'\n')))
for name, results in runs.items():
    print(f'minpanel export of the week {name}: {results[0][2]} rows, wall median '
          f'{statistics.median(r[0] for r in results):.0f} ms, CPU (user+sys) median '
          f'{statistics.median(r[1] for r in results):.0f} ms, {len(results)} runs')
PY
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
