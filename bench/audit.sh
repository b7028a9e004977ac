#!/usr/bin/env bash
# The audit log's cost on queries and exports (docs/benchmarks.md, "Audit
# log"): makes a data folder of generated events with the first binary, then
# bench/audit/latency.mjs has both binaries take turns serving it.
#
#   bench/audit.sh OLD_BINARY NEW_BINARY [EVENTS] [ROUNDS] [REQUESTS] [CASES]
#
# CASES: query,export (the default), or one of them (`query` alone: a run of
# many queries in the time the exports would take).
#
# OLD is a build without the audit log — configured in a build folder of its
# own with -DMINPANEL_BENCH_NO_AUDIT=ON -DMINPANEL_TESTS=OFF (the log's
# writes are no-ops; such a binary starts only with MINPANEL_BENCH_NO_AUDIT=1
# in its environment, which this script sets, and warns on stderr) — and NEW
# one with it. Either may end in @shm (the audit folder on /dev/shm: the
# log's work without its fsync) or @disk (beside the data folder), e.g.
#   bench/audit.sh build-noaudit/apps/minpanel/minpanel@disk build/apps/minpanel/minpanel@disk
#   bench/audit.sh build/apps/minpanel/minpanel@shm build/apps/minpanel/minpanel@disk
# NEW may be several, comma-separated, and each may end in @FILE, a config
# file it serves with (serve --config FILE), e.g. to compare
# audit_sync_hold_us settings with one binary:
#   bench/audit.sh NOAUDIT@disk NEW@disk@hold-0.toml,NEW@disk@hold-500.toml 100000 7 2400 query
# Generated data only: synthetic users gen-N.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${repo}/bench/lib/audit_data.sh"
old="$1"; new="$2"; old_bin="${old%%@*}"; events="${3:-100000}"; rounds="${4:-3}"; requests="${5:-200}"
cases="${6:-query,export}"
# A MINPANEL_BENCH_NO_AUDIT binary refuses to start without it; others ignore it.
export MINPANEL_BENCH_NO_AUDIT=1
bench_audit_folder
secret="$("${old_bin}" project create bench --data "${folder}/data" --keys "${folder}/keys" --json |
  bench_json_field secret)"
bench_audit_week
bench_audit_import "${old_bin}" "${events}"
node "${repo}/bench/audit/latency.mjs" --bins "${old},${new}" --data "${folder}/data" \
  --keys "${folder}/keys" --secret "${secret}" --rounds "${rounds}" --requests "${requests}" \
  --from-date "${from_date}" --to-date "${to_date}" --cases "${cases}"
