# Sourced by bench/audit*.sh: the data folder they share — a temporary
# folder with a project "bench", and a week of generated events imported
# into it (5,000 synthetic users gen-N, five event names; generated data
# only). Defines functions and nothing else; the caller has set -euo
# pipefail.

# bench_json_field FIELD: FIELD of the JSON object on the last line of stdin
# (the line `minpanel ... --json` prints).
bench_json_field() {
  node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>console.log(JSON.parse(s.trim().split('\n').pop())['$1']))"
}

# bench_audit_folder: sets folder to a new temporary folder, removed when the
# script exits, holding data/ and keys/ (mode 700).
bench_audit_folder() {
  folder="$(mktemp -d)"
  trap 'rm -rf "${folder}"' EXIT
  mkdir -p "${folder}/data" "${folder}/keys"
  chmod 700 "${folder}/keys"
}

# bench_audit_week: sets day_ms, from_ms (midnight UTC seven days ago) and
# from_date / to_date (YYYY-MM-DD, eight days from from_ms: the whole week).
bench_audit_week() {
  day_ms=86400000
  from_ms=$(( ($(date +%s) * 1000 / day_ms - 7) * day_ms ))
  from_date="$(date -u -d "@$(( from_ms / 1000 ))" +%F)"
  to_date="$(date -u -d "@$(( from_ms / 1000 + 8 * 86400 ))" +%F)"
}

# The properties of row i unless the caller names its own: plan and price on
# every row, insert ids 'b' + i in hex.
bench_audit_default_row='return { distinct_id: user, time, $insert_id: "b" + id_hex,
  plan: ["free", "pro", "team"][i % 3], price: i % 100 };'

# bench_audit_events FILE EVENTS FROM_MS [ROW_JS]: writes EVENTS events as
# Mixpanel import lines to FILE: row i is event ['page_view' x3, 'sign_up',
# 'purchase'][i % 5] by user gen-(i % 5000), at a time spread over the seven
# days from FROM_MS. ROW_JS is the body of a JavaScript function of (i, name,
# user, time, id_hex) that returns the row's properties (time in seconds,
# id_hex is i in 31 hex digits); by default bench_audit_default_row.
bench_audit_events() {
  node - "$1" "$2" "$3" "${4:-${bench_audit_default_row}}" <<'JS'
const [file, events, fromMs, rowJs] = process.argv.slice(2);
const row = new Function('i', 'name', 'user', 'time', 'id_hex', rowJs);
const dayMs = 86400000;
const names = ['page_view', 'page_view', 'page_view', 'sign_up', 'purchase'];
const lines = [];
for (let i = 0; i < Number(events); i += 1) {
  const name = names[i % 5];
  const time = Math.floor((Number(fromMs) + (i * 6047) % (7 * dayMs)) / 1000);
  const properties = row(i, name, 'gen-' + (i % 5000), time, i.toString(16).padStart(31, '0'));
  lines.push(JSON.stringify({ event: name, properties }));
}
require('fs').writeFileSync(file, lines.join('\n') + '\n');
JS
}

# bench_audit_import BINARY EVENTS [ROW_JS]: bench_audit_events over the week
# of bench_audit_week into ${folder}/events.jsonl, imported into project
# bench by BINARY.
bench_audit_import() {
  bench_audit_events "${folder}/events.jsonl" "$2" "${from_ms}" "${3:-}"
  "$1" import "${folder}/events.jsonl" --project bench --data "${folder}/data" \
    --keys "${folder}/keys" >/dev/null
}
