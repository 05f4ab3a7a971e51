#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium for the report test
# (test/integration/inspect-identify-export.test.ts drives it with playwright-core).
# Idempotent: does nothing when it is already there and starts. Needs root or sudo for apt-get.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1; then
  echo "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-chromium: $CHROMIUM is missing and apt-get is not available; install Chromium there by hand" >&2
  exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "ensure-chromium: $CHROMIUM is missing and this user cannot run apt-get (not root, no sudo)" >&2
    exit 1
  fi
fi

echo "ensure-chromium: installing Debian's chromium (a few minutes the first time)..."
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

if ! "$CHROMIUM" --version >/dev/null 2>&1; then
  echo "ensure-chromium: chromium was installed but $CHROMIUM --version fails" >&2
  exit 1
fi
echo "chromium: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
