#!/usr/bin/env bash
# make run: find a database, prepare it, and serve shoplab on :3000.
#   1. DATABASE_URL, when set;
#   2. else a Docker engine: `docker compose up -d postgres`;
#   3. else shopd's default DATABASE_URL (`bin/shopd config DATABASE_URL`:
#      the local PostgreSQL, database shoplab), the one every shopd command
#      uses without DATABASE_URL; started with pg_ctlcluster when it is
#      installed but down.
# Then `shopd setup` creates the database if missing, migrates it and seeds
# it when empty, and `shopd serve` takes over, with BUYER_AUTH=off unless
# set (the original's clients send no buyer token; shopd warns).
# Mail: when SMTP_ADDR is unset, Mailpit (a mail catcher with a web UI) is
# built from the Go module proxy (once, into bin/), started on 127.0.0.1
# (SMTP 1025, UI 8025, or the next free ports) and stopped when serve exits,
# so the order confirmations can be watched at http://localhost:8025.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/shopd}

if [[ -n "${DATABASE_URL:-}" ]]; then
  echo "run: using DATABASE_URL"
elif docker info >/dev/null 2>&1; then
  echo "run: Docker engine found; starting Postgres with docker compose"
  docker compose up -d --wait postgres
  export DATABASE_URL="postgres://shoplab:shoplab@127.0.0.1:${SHOPLAB_PG_PORT:-5433}/shoplab?sslmode=disable"
  echo "run: other bin/shopd commands reach this database with: export DATABASE_URL='$DATABASE_URL'"
else
  # shopd's default DATABASE_URL: the database every bin/shopd command uses
  # when DATABASE_URL is unset, so that they all agree with make run.
  url=$("$BIN" config DATABASE_URL)
  if ! pg_isready -q -d "$url" 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null && [[ "$url" =~ @(127\.0\.0\.1|localhost)[:/] ]]; then
      echo "run: local PostgreSQL is down; starting it"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
      for _ in $(seq 30); do pg_isready -q -d "$url" && break; sleep 1; done
    fi
  fi
  pg_isready -q -d "$url" || { echo "run: no database: set DATABASE_URL, start a Docker engine, or start PostgreSQL for $url" >&2; exit 1; }
  echo "run: using shopd's default DATABASE_URL, $url"
fi

"$BIN" setup

MAILPIT_VERSION=v1.33.1
MAILPIT_PID=""
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { # the first port from $1 on which nothing listens
  local p=$1
  while listening "$p"; do p=$((p + 1)); done
  echo "$p"
}
if [[ -z "${SMTP_ADDR:-}" ]]; then
  MAILPIT="bin/mailpit-$MAILPIT_VERSION/mailpit"
  if [[ ! -x "$MAILPIT" ]]; then
    echo "run: building Mailpit $MAILPIT_VERSION from the Go module proxy (once; about a minute)"
    GOBIN="$PWD/bin/mailpit-$MAILPIT_VERSION" "${GO:-go}" install "github.com/axllent/mailpit@$MAILPIT_VERSION"
  fi
  SMTP_PORT=$(free_port "${MAILPIT_SMTP_PORT:-1025}")
  UI_PORT=$(free_port "${MAILPIT_UI_PORT:-8025}")
  "$MAILPIT" --smtp "127.0.0.1:$SMTP_PORT" --listen "127.0.0.1:$UI_PORT" \
    --disable-version-check --quiet &
  MAILPIT_PID=$!
  trap 'kill "$MAILPIT_PID" 2>/dev/null; wait "$MAILPIT_PID" 2>/dev/null' EXIT
  for _ in $(seq 50); do listening "$SMTP_PORT" && break; sleep 0.1; done
  listening "$SMTP_PORT" || { echo "run: Mailpit did not start" >&2; exit 1; }
  export SMTP_ADDR="127.0.0.1:$SMTP_PORT"
  echo "run: Mailpit catches the order confirmations (SMTP $SMTP_ADDR); watch them arrive at http://localhost:$UI_PORT"
fi

# Buyer routes open, as the original's clients expect (they send no
# token): shopd warns at start. BUYER_AUTH=on make run turns them on.
export BUYER_AUTH=${BUYER_AUTH:-off}
if [[ "$BUYER_AUTH" == off ]]; then
  echo "run: WARNING: BUYER_AUTH=off: anyone can read any buyer's orders and check out on their account (BUYER_AUTH=on make run to require buyer tokens; docs/security.md)"
fi
echo "run: serving on http://localhost:${PORT:-3000} (Ctrl-C stops)"
# serve runs as a child, not exec'd, so that Mailpit is stopped when it
# exits; Ctrl-C and SIGTERM reach it as SIGTERM and it shuts down gracefully.
"$BIN" serve &
SHOPD_PID=$!
trap 'kill -TERM "$SHOPD_PID" 2>/dev/null' INT TERM
while :; do
  status=0
  wait "$SHOPD_PID" || status=$?
  kill -0 "$SHOPD_PID" 2>/dev/null || break # else a trapped signal ended wait early
done
exit "$status"
