#!/usr/bin/env bash
# api-diff.sh BASE: the breaking changes of api/openapi.yaml between git
# revision BASE and the working tree (uncommitted changes included), from
# oasdiff (pinned in tools/oasdiff/go.mod, run with `go tool`). It prints
# oasdiff's report and exits non-zero when a change breaks clients (level
# ERR); warnings are printed and pass.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${1:-}
if [[ -z $base ]]; then
  echo "usage: make api-diff BASE=<git revision>   (e.g. BASE=main, BASE=HEAD~1, a tag)" >&2
  exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! git show "$base:api/openapi.yaml" >"$tmp/base.yaml" 2>"$tmp/err"; then
  echo "api-diff: no api/openapi.yaml at $base: $(cat "$tmp/err")" >&2
  exit 2
fi
echo "api-diff: api/openapi.yaml at $base ($(git rev-parse --short "$base")) -> working tree"
status=0
go -C tools/oasdiff tool oasdiff breaking "$tmp/base.yaml" "$PWD/api/openapi.yaml" --fail-on ERR || status=$?
if ((status)); then
  echo "api-diff: breaking changes since $base (see above)" >&2
  exit "$status"
fi
echo "api-diff: no breaking changes since $base"
