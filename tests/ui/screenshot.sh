#!/usr/bin/env bash
# Screenshots of what the Temporal Web UI shows of a running pipeline:
# the workflow list filtered by the SluiceState search attribute, and the
# pipeline's workflow page with its static summary and current details
# (the table of connectors). Headless Chromium (Debian's `chromium`,
# installed when missing) renders the pages of an embedded dev server.
#
#   bash tests/ui/screenshot.sh [OUT_DIR]     # default /tmp/sluice-ui
#
# It runs examples/numbers.sql with `sluice run --dev --keep-open` in a
# scratch directory (ports 7233-7236 and the UI's 8233 must be free),
# waits until c2 runs, and writes list.png and workflow.png.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-/tmp/sluice-ui}"
mkdir -p "$out"
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq chromium
fi
work="$(mktemp -d)"
trap 'kill "$run_pid" 2>/dev/null || true; wait "$run_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$repo" && go build -o "$work/sluice" ./starter)
cd "$work"
./sluice run --dev --keep-open "$repo/examples/numbers.sql" >run.log 2>&1 &
run_pid=$!
for _ in $(seq 1 120); do
  if TEMPORAL_ADDRESS=127.0.0.1:7233 ./sluice connector numbers numbers c2 stats 2>/dev/null | grep -q '"state": "Running"'; then
    sleep 5 # a few records, and the details' table drawn
    break
  fi
  sleep 1
done
shot() { # shot FILE URL
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
    --hide-scrollbars --window-size=1600,1100 --virtual-time-budget=15000 \
    --screenshot="$1" "$2" >/dev/null 2>&1
}
ui=http://127.0.0.1:8233/namespaces/default
shot "$out/list.png" "$ui/workflows?query=SluiceState%3D%22Running%22"
shot "$out/workflow.png" "$ui/workflows/pipeline-numbers"
ls -l "$out"/*.png
