#!/usr/bin/env bash
# Screenshots of what the Temporal Web UI shows of a running pipeline:
# the workflow list filtered by the SluiceState search attribute, and the
# pipeline's workflow page with its static summary and current details
# (the table of connectors). Headless Chromium (Debian's `chromium`,
# installed when missing), driven by playwright-core (shoot.mjs, from npm),
# renders the pages of an embedded dev server; the script fails when a
# page never shows the pipeline, its connectors and their states.
#
#   bash tests/ui/screenshot.sh [OUT_DIR]     # default /tmp/sluice-ui
#   PORT=17233 UI_PORT=18233 bash tests/ui/screenshot.sh OUT_DIR
#
# It runs examples/numbers.sql with `sluice run --dev --keep-open` in a
# scratch directory (ports PORT to PORT+3, default 7233-7236, and UI_PORT,
# default 8233, must be free), waits until c2 runs, and writes list.png
# and workflow.png. TestWebUIScreenshots (tests/ui_test.go) runs it.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-/tmp/sluice-ui}"
port="${PORT:-7233}"
ui_port="${UI_PORT:-8233}"
mkdir -p "$out"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq chromium
fi
work="$(mktemp -d)"
run_pid=""
trap 'kill "$run_pid" 2>/dev/null || true; wait "$run_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$repo" && go build -o "$work/sluice" ./starter && go build -o "$work/sluice-worker" ./worker)
cd "$work"
./sluice run --dev --port "$port" --ui-port "$ui_port" --keep-open "$repo/examples/numbers.sql" >run.log 2>&1 &
run_pid=$!
for _ in $(seq 1 120); do
  if TEMPORAL_ADDRESS="127.0.0.1:$port" ./sluice connector numbers numbers c2 stats 2>/dev/null | grep -q '"state": "Running"'; then
    sleep 5 # a few records, and the details' table drawn
    break
  fi
  sleep 1
done
(cd "$repo/tests/ui" && npm install --no-audit --no-fund --no-package-lock --loglevel=error >/dev/null)
node "$repo/tests/ui/shoot.mjs" "http://127.0.0.1:$ui_port" default pipeline-numbers "$out" || { cat run.log >&2; exit 1; }
