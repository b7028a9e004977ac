#!/usr/bin/env bash
# `make run`: serves minpanel from ./var with the demo project.
# The key folder sits beside the data folder, never inside it.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
exec ./build/apps/minpanel/minpanel serve --data var/data --keys var/keys \
  --listen "${MINPANEL_LISTEN:-127.0.0.1:8080}" --demo
