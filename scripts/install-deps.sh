#!/usr/bin/env bash
# Installs, from Debian's packages, the programs the tests and gates use
# beside Go and the local PostgreSQL, when they are missing:
#   node, npm        make lint-migrations (squawk-cli), make lint-api
#   psql, pgbench    make bench-gate (the \copy and pgbench floors)
#   pgbouncer        the PgBouncer (transaction pooling) integration tests
#   pg_autoctl       the failover chaos scenario (pg_auto_failover)
# Needs root (apt-get); prints what it installs and exits non-zero when it
# cannot install something, naming it. Run by .ci/run and `make deps`.
set -euo pipefail

pg=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
pg=${pg:-15}

need=()
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
command -v psql >/dev/null || need+=("postgresql-client-$pg")
command -v pgbench >/dev/null || need+=("postgresql-$pg")
[[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null || need+=(pgbouncer)
command -v pg_autoctl >/dev/null || need+=("postgresql-$pg-auto-failover" pg-auto-failover-cli)

if ((${#need[@]} == 0)); then
  exit 0
fi
echo "install-deps: installing ${need[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: not root; install these Debian packages yourself: ${need[*]}" >&2
  exit 1
fi
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; }; then
  echo "install-deps: could not install ${need[*]}" >&2
  exit 1
fi
# Debian's pgbouncer package starts a system pgbouncer on :6432; the tests
# start their own on free ports and need none.
if [[ " ${need[*]} " == *" pgbouncer "* ]] && command -v service >/dev/null; then
  service pgbouncer stop >/dev/null 2>&1 || true
fi
