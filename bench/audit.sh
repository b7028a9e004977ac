#!/usr/bin/env bash
# The audit log's cost on queries and exports (docs/benchmarks.md, "Audit
# log"): makes a data folder of generated events with the first binary, then
# bench/audit/latency.mjs has both binaries take turns serving it.
#
#   bench/audit.sh OLD_BINARY NEW_BINARY [EVENTS] [ROUNDS] [REQUESTS]
#
# OLD is a build without the audit log — configured in a build folder of its
# own with -DMINPANEL_BENCH_NO_AUDIT=ON -DMINPANEL_TESTS=OFF (the log's
# writes are no-ops; such a binary starts only with MINPANEL_BENCH_NO_AUDIT=1
# in its environment, which this script sets, and warns on stderr) — and NEW
# one with it. Either may end in @shm (the audit folder on /dev/shm: the
# log's work without its fsync) or @disk (beside the data folder), e.g.
#   bench/audit.sh build-noaudit/apps/minpanel/minpanel@disk build/apps/minpanel/minpanel@disk
#   bench/audit.sh build/apps/minpanel/minpanel@shm build/apps/minpanel/minpanel@disk
# Generated data only: synthetic users gen-N.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
old="$1"; new="$2"; old_bin="${old%@*}"; events="${3:-100000}"; rounds="${4:-3}"; requests="${5:-200}"
# A MINPANEL_BENCH_NO_AUDIT binary refuses to start without it; others ignore it.
export MINPANEL_BENCH_NO_AUDIT=1
folder="$(mktemp -d)"
trap 'rm -rf "${folder}"' EXIT
mkdir -p "${folder}/data" "${folder}/keys"; chmod 700 "${folder}/keys"
secret="$("${old_bin}" project create bench --data "${folder}/data" --keys "${folder}/keys" --json |
  node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s.trim().split('\n').pop()).secret))")"
day_ms=86400000
from_ms=$(( ($(date +%s) * 1000 / day_ms - 7) * day_ms ))
node -e "
const names = ['page_view', 'page_view', 'page_view', 'sign_up', 'purchase'];
const lines = [];
for (let i = 0; i < ${events}; i += 1) {
  lines.push(JSON.stringify({ event: names[i % 5], properties: {
    distinct_id: 'gen-' + (i % 5000), time: Math.floor((${from_ms} + (i * 6047) % (7 * ${day_ms})) / 1000),
    \$insert_id: 'b' + i.toString(16).padStart(31, '0'), plan: ['free', 'pro', 'team'][i % 3], price: i % 100 } }));
}
require('fs').writeFileSync('${folder}/events.jsonl', lines.join('\n') + '\n');"
"${old_bin}" import "${folder}/events.jsonl" --project bench --data "${folder}/data" --keys "${folder}/keys" >/dev/null
from_date="$(date -u -d "@$(( from_ms / 1000 ))" +%F)"
to_date="$(date -u -d "@$(( from_ms / 1000 + 8 * 86400 ))" +%F)"
node "${repo}/bench/audit/latency.mjs" --bins "${old},${new}" --data "${folder}/data" \
  --keys "${folder}/keys" --secret "${secret}" --rounds "${rounds}" --requests "${requests}" \
  --from-date "${from_date}" --to-date "${to_date}"
