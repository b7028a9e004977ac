#!/usr/bin/env bash
# Installs every build, test and benchmark dependency of minpanel that is missing.
# Debian 12 packages only (plus npm packages for the tests, installed by tests/npm).
# Safe to run again: it installs nothing when everything is present.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates openssl
  libboost-dev libssl-dev libsimdjson-dev libsodium-dev libzstd-dev liblz4-dev zlib1g-dev libisal-dev
  libcli11-dev libspdlog-dev libfmt-dev libtomlplusplus-dev libhowardhinnant-date-dev libjemalloc-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  clang-14 libfuzzer-14-dev libclang-rt-14-dev
  libre2-dev libmaxminddb-dev libyaml-cpp-dev uap-core
  libcsv-dev libicu-dev  # incident: CSV reader (RFC 4180) and NFKC_Casefold for emails
  libcurl4-openssl-dev  # incident send: SMTP with STARTTLS / TLS and AUTH
  python3-aiosmtpd  # the local SMTP server incident_send.test.mjs starts
  tzdata wrk nodejs npm
  chromium  # headless, driven by playwright-core in the browser SDK tests (tests/integration/browser.mjs)
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
# Node.js may come from outside Debian (a newer build already on the machine); keep it.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for package in "${missing[@]}"; do
    [[ "$package" == nodejs || "$package" == npm ]] || filtered+=("$package")
  done
  missing=("${filtered[@]+"${filtered[@]}"}")
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
