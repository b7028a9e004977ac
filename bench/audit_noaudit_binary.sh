#!/usr/bin/env bash
# Makes the "no audit log" binary bench/audit.sh compares against, from an
# existing Release build, in seconds: BUILD's minpanel relinked with only
# src/audit/audit_log.cc compiled again with -DMINPANEL_BENCH_NO_AUDIT (the
# log's writes are no-ops; the binary starts only with
# MINPANEL_BENCH_NO_AUDIT=1 in its environment and warns on stderr), every
# other object the build's own — the same code as the build but the log.
# A build folder of its own (-DMINPANEL_BENCH_NO_AUDIT=ON, bench/audit.sh)
# gives the same binary after a second full build.
#
#   bench/audit_noaudit_binary.sh BUILD_DIR OUT
#   bench/audit_noaudit_binary.sh build var/minpanel-noaudit
# BUILD_DIR: a Ninja build (its compile_commands.json and link command).
set -euo pipefail
build="$(cd "${1:?usage: $0 BUILD_DIR OUT}" && pwd)"
out="$(realpath -m "${2:?usage: $0 BUILD_DIR OUT}")"
work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
cd "${build}"
object="src/audit/CMakeFiles/minpanel_audit.dir/audit_log.cc.o"
compile="$(python3 -c "
import json, sys
for entry in json.load(open('compile_commands.json')):
    if entry['file'].endswith('/src/audit/audit_log.cc'):
        print(entry['command'])
")"
[[ "${compile}" == *" -o ${object} "* ]] || { echo "$0: no compile command for audit_log.cc in ${build}" >&2; exit 1; }
eval "${compile/ -o ${object} / -DMINPANEL_BENCH_NO_AUDIT -o ${work}/audit_log.cc.o }"
cp src/audit/libminpanel_audit.a "${work}/"
(cd "${work}" && ar r libminpanel_audit.a audit_log.cc.o)
link="$(ninja -t commands apps/minpanel/minpanel | tail -1)"
[[ "${link}" == *" -o apps/minpanel/minpanel "* ]] || { echo "$0: no link command in ${build}" >&2; exit 1; }
link="${link//src\/audit\/libminpanel_audit.a/${work}/libminpanel_audit.a}"
eval "${link/ -o apps\/minpanel\/minpanel / -o ${out} }"
echo "${out}: ${build}'s minpanel without the audit log's writes (MINPANEL_BENCH_NO_AUDIT=1 to start it)"
