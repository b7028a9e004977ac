#!/usr/bin/env bash
# Installs what the query benchmark (bench/query.sh) compares minpanel with:
# Debian's ClickHouse (server and client, started privately by
# bench/query/clickhouse.sh, never as the system service) and DuckDB through
# the @duckdb/node-api npm package pinned by bench/query/package-lock.json.
# Safe to run again: it installs nothing when everything is present.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

missing=()
for package in clickhouse-server clickhouse-client nodejs npm; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
# Node.js may come from outside Debian (a newer build already on the machine); keep it.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for package in "${missing[@]+"${missing[@]}"}"; do
    [[ "$package" == nodejs || "$package" == npm ]] || filtered+=("$package")
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-bench: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # The package's own service is not used (bench/query/clickhouse.sh runs a
  # private server), so keep the installer from starting it.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  status=0
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" || status=$?
  $SUDO rm -f /usr/sbin/policy-rc.d
  [ "$status" -eq 0 ] || exit "$status"
fi

# npm ci is a no-op in effect when node_modules matches the lock file, but it
# always deletes and reinstalls; skip it when the lock has not changed.
lock="$repo/bench/query/package-lock.json"
stamp="$repo/bench/query/node_modules/.setup-bench-lock"
if [ ! -f "$stamp" ] || ! cmp -s "$lock" "$stamp"; then
  npm ci --prefix "$repo/bench/query" --no-audit --no-fund --loglevel=error
  cp "$lock" "$stamp"
fi
