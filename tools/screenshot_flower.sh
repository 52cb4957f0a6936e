#!/usr/bin/env bash
# Screenshots of Flower for docs/operations.md, taken in headless Chromium against a running
# `./dev up` stack (Flower on 127.0.0.1:5555 behind FLOWER_BASIC_AUTH from .dev/app.env).
#
#   tools/screenshot_flower.sh [OUTDIR]      # default docs/img
#
# Needs Debian's chromium (`apt-get install chromium`). Writes flower-broker.png (queue depths
# from the RabbitMQ management API) and flower-workers.png.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/docs/img}"
ENV_FILE="$ROOT/.dev/app.env"
FLOWER="${FLOWER_URL:-127.0.0.1:5555}"
CHROMIUM="${CHROMIUM:-chromium}"

[ -f "$ENV_FILE" ] || { echo "no $ENV_FILE: run ./dev up first" >&2; exit 1; }
command -v "$CHROMIUM" >/dev/null || { echo "no $CHROMIUM: apt-get install chromium" >&2; exit 1; }
AUTH=$(sed -n 's/^FLOWER_BASIC_AUTH=//p' "$ENV_FILE")
[ -n "$AUTH" ] || { echo "FLOWER_BASIC_AUTH missing from $ENV_FILE" >&2; exit 1; }
curl -fsS -o /dev/null -u "$AUTH" "http://$FLOWER/broker" ||
  { echo "Flower does not answer on $FLOWER: is ./dev up running?" >&2; exit 1; }

mkdir -p "$OUT"
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT

shot() {  # page file
  # A fresh profile and no background networking: this machine has no network but loopback.
  # Basic auth in the URL works for a top-level navigation in headless Chromium.
  "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$PROFILE" --hide-scrollbars --window-size=1400,900 \
    --virtual-time-budget=5000 --screenshot="$OUT/$2" "http://$AUTH@$FLOWER/$1" 2>/dev/null
  [ -s "$OUT/$2" ] || { echo "no screenshot of /$1" >&2; exit 1; }
  echo "$OUT/$2"
}

shot broker flower-broker.png
shot workers flower-workers.png
