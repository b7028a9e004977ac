#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 (ASan + UBSan) in build-fuzz and
# runs each for the given number of seconds on a scratch copy of its seed
# corpus (fuzz/corpus/<target>), so the checked-in seeds stay unchanged.
#
#   scripts/fuzz.sh 10     # short run, as `make test` does
#   scripts/fuzz.sh 300    # long run
#
# Exits non-zero when any target crashes, leaks or times out; the crashing
# input is kept in build-fuzz/artifacts/<target>/.
set -euo pipefail

seconds="${1:-10}"
if ! [[ "${seconds}" =~ ^[0-9]+$ ]] || [[ "${seconds}" -eq 0 ]]; then
  echo "usage: $0 SECONDS_PER_TARGET" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"
targets=(audit_params_fuzz audit_reader_fuzz audit_record_fuzz audit_subjects_fuzz datamap_fuzz decompress_fuzz detectors_fuzz erasure_journal_fuzz erasure_request_fuzz form_fuzz incident_csv_fuzz incident_json_fuzz incident_send_fuzz incident_stream_fuzz key_usage_fuzz mixpanel_events_fuzz mixpanel_profiles_fuzz payload_fuzz plausible_events_fuzz posthog_events_fuzz profile_file_fuzz query_parse_fuzz saved_item_fuzz segment_events_fuzz segment_fuzz trace_fuzz wal_fuzz url_fuzz)

CC=clang-14 CXX=clang++-14 cmake -S "${root}" -B "${build}" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMINPANEL_FUZZ=ON -DMINPANEL_TESTS=OFF >/dev/null
cmake --build "${build}" --target fuzz -j2

scratch="$(mktemp -d)"
trap 'rm -rf "${scratch}"' EXIT

failed=()
for target in "${targets[@]}"; do
  corpus="${scratch}/${target}"
  artifacts="${build}/artifacts/${target}"
  mkdir -p "${corpus}" "${artifacts}"
  cp -r "${root}/fuzz/corpus/${target}/." "${corpus}/" 2>/dev/null || true
  echo "== ${target}: ${seconds} s"
  if "${build}/fuzz/${target}" -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="${artifacts}/" "${corpus}" \
      >"${scratch}/${target}.log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "${scratch}/${target}.log" | tail -2 || true
  else
    echo "!! ${target} failed; log tail:" >&2
    tail -40 "${scratch}/${target}.log" >&2
    failed+=("${target}")
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz failures: ${failed[*]}" >&2
  exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${seconds} s without a crash"
