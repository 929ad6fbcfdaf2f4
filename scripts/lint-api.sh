#!/usr/bin/env bash
# Lints api/openapi.yaml with Redocly CLI (@redocly/cli from npm, pinned in
# tools/redocly/package-lock.json and installed into
# tools/redocly/node_modules) and its recommended ruleset. Settings:
# api/redocly.yaml; the few findings accepted on purpose, each with its
# reason: api/.redocly.lint-ignore.yaml. Any warning fails the lint.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "lint-api: node and npm are needed to install @redocly/cli (Debian: apt-get install nodejs npm, or make deps)" >&2
  exit 1
fi

# Install the pinned version when it is not there yet (npm install
# --no-save, as lint-migrations.sh does for squawk: same pinned,
# integrity-checked package, the lock left as it is).
redocly=tools/redocly/node_modules/.bin/redocly
want=$(sed -n 's/.*"@redocly\/cli": "\(.*\)".*/\1/p' tools/redocly/package.json)
have=$(cd tools/redocly && node -p 'require("@redocly/cli/package.json").version' 2>/dev/null || true)
if [[ ! -x $redocly || "$have" != "$want" ]]; then
  echo "lint-api: installing @redocly/cli $want into tools/redocly"
  npm install --prefix tools/redocly --no-save --no-audit --no-fund --loglevel=error
fi

echo "lint-api: @redocly/cli $want, recommended ruleset, api/openapi.yaml"
# No telemetry, no update check: CI has no internet.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=0
"$redocly" lint --config api/redocly.yaml --max-problems 200 api/openapi.yaml 2>&1 | tee "$out" || status=1
# Redocly fails on errors only; a warning of the recommended ruleset
# fails this lint too.
if grep -Eq 'You have [0-9]+ warnings?' "$out"; then status=1; fi
if ((status)); then
  echo "lint-api: Redocly found problems (fix them, or justify an exception: see api/redocly.yaml)" >&2
  exit 1
fi
echo "lint-api: clean"
