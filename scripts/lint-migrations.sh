#!/usr/bin/env bash
# Lints every migration in migrations/ with squawk (squawk-cli from npm,
# pinned in tools/squawk/package-lock.json and installed into
# tools/squawk/node_modules). Settings and the reasons for any exception:
# .squawk.toml. goose runs a migration in a transaction unless it says
# `-- +goose NO TRANSACTION`, so the two kinds are linted apart, each with
# the assumption that matches how it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "lint-migrations: node and npm are needed to install squawk-cli (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi

# Install the pinned version when it is not there yet. Not `npm ci`: the
# lock lists only the linux-x64 build of squawk (the registry these machines
# reach serves no other), and npm ci refuses a lock that lacks the other
# platforms' optional packages. `npm install --no-save` installs the same
# pinned, integrity-checked packages and leaves the lock as it is.
squawk=tools/squawk/node_modules/.bin/squawk
want=$(sed -n 's/.*"squawk-cli": "\(.*\)".*/\1/p' tools/squawk/package.json)
if [[ ! -x $squawk || "$("$squawk" --version 2>/dev/null)" != "squawk $want" ]]; then
  echo "lint-migrations: installing squawk-cli $want into tools/squawk"
  npm install --prefix tools/squawk --no-save --no-audit --no-fund --loglevel=error
fi

tx=() notx=()
for f in migrations/*.sql; do
  if grep -q '^-- +goose NO TRANSACTION' "$f"; then notx+=("$f"); else tx+=("$f"); fi
done
echo "lint-migrations: $("$squawk" --version), ${#tx[@]} transactional and ${#notx[@]} NO TRANSACTION migrations"

status=0
if ((${#tx[@]})); then
  "$squawk" --config .squawk.toml --assume-in-transaction "${tx[@]}" || status=1
fi
if ((${#notx[@]})); then
  "$squawk" --config .squawk.toml --no-assume-in-transaction "${notx[@]}" || status=1
fi
if ((status)); then
  echo "lint-migrations: squawk found problems (fix them, or justify an exception: see .squawk.toml)" >&2
  exit 1
fi
echo "lint-migrations: clean"
