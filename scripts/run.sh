#!/usr/bin/env bash
# make run: find a database, prepare it, and serve shoplab on :3000.
#   1. DATABASE_URL, when set;
#   2. else a Docker engine: `docker compose up -d postgres`;
#   3. else the local PostgreSQL through the standard PG* variables
#      (defaults: 127.0.0.1:5432, user postgres, database shoplab),
#      started with pg_ctlcluster when it is installed but down.
# Then `shopd setup` creates the database if missing, migrates it and seeds
# it when empty, and `shopd serve` takes over.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/shopd}

if [[ -n "${DATABASE_URL:-}" ]]; then
  echo "run: using DATABASE_URL"
elif docker info >/dev/null 2>&1; then
  echo "run: Docker engine found; starting Postgres with docker compose"
  docker compose up -d --wait postgres
  export DATABASE_URL="postgres://shoplab:shoplab@127.0.0.1:${SHOPLAB_PG_PORT:-5433}/shoplab?sslmode=disable"
else
  export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres} PGDATABASE=${PGDATABASE:-shoplab}
  if ! pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null && [[ "$PGHOST" == 127.0.0.1 || "$PGHOST" == localhost ]]; then
      echo "run: local PostgreSQL is down; starting it"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
      for _ in $(seq 30); do pg_isready -q -h "$PGHOST" -p "$PGPORT" && break; sleep 1; done
    fi
  fi
  pg_isready -q -h "$PGHOST" -p "$PGPORT" || { echo "run: no database: set DATABASE_URL, start a Docker engine, or start PostgreSQL on $PGHOST:$PGPORT" >&2; exit 1; }
  echo "run: using local PostgreSQL $PGUSER@$PGHOST:$PGPORT/$PGDATABASE"
  export DATABASE_URL=""
fi

"$BIN" setup
echo "run: serving on http://localhost:${PORT:-3000} (Ctrl-C stops)"
exec "$BIN" serve
