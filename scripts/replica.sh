#!/usr/bin/env bash
# replica.sh: a streaming read replica (hot standby) of a PostgreSQL primary
# on this machine, for the reports pool (REPORTS_DATABASE_URL, docs/reports.md).
#
#   scripts/replica.sh create    pg_basebackup -R from the primary through a
#                                replication slot, then start; a no-op when the
#                                standby exists (it is started if it is down)
#   scripts/replica.sh start     start the standby (no-op when running)
#   scripts/replica.sh stop      stop it (fast shutdown; no-op when stopped)
#   scripts/replica.sh destroy   stop it, delete its directory and drop its
#                                slot on the primary (no-op when absent)
#   scripts/replica.sh status    running or not, in recovery or not, lag
#   scripts/replica.sh url       the REPORTS_DATABASE_URL of the standby
#
# Settings (environment):
#   PRIMARY_HOST     127.0.0.1        the primary to copy and follow
#   PRIMARY_PORT     5432
#   PRIMARY_USER     postgres         a role with REPLICATION (trust on loopback)
#   REPLICA_PORT     5433             the standby's port
#   REPLICA_DIR      /var/lib/postgresql/shoplab-replica-$REPLICA_PORT
#   REPLICA_SLOT     shoplab_replica_$REPLICA_PORT   the physical slot on the primary
#   REPLICA_DB       shoplab          the database `url` names
#   PG_BIN           /usr/lib/postgresql/15/bin
#
# The primary needs wal_level=replica (the default), a free WAL sender
# (max_wal_senders) and slot (max_replication_slots), and a pg_hba.conf line
# that lets PRIMARY_USER connect for replication from the loopback, e.g.
#   host replication all 127.0.0.1/32 trust
# (a reload is enough for pg_hba.conf: SELECT pg_reload_conf()). `create`
# says which of these is missing.
#
# The server runs as the postgres user: run this script as postgres, or as
# root (it then runs the PostgreSQL programs with runuser -u postgres).
set -euo pipefail

PRIMARY_HOST=${PRIMARY_HOST:-127.0.0.1}
PRIMARY_PORT=${PRIMARY_PORT:-5432}
PRIMARY_USER=${PRIMARY_USER:-postgres}
REPLICA_PORT=${REPLICA_PORT:-5433}
REPLICA_DIR=${REPLICA_DIR:-/var/lib/postgresql/shoplab-replica-$REPLICA_PORT}
REPLICA_SLOT=${REPLICA_SLOT:-shoplab_replica_$REPLICA_PORT}
REPLICA_DB=${REPLICA_DB:-shoplab}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

die() { echo "replica.sh: $*" >&2; exit 1; }

[[ -x $PG_BIN/pg_basebackup ]] || die "no $PG_BIN/pg_basebackup: install the PostgreSQL 15 server (make deps)"
[[ $REPLICA_SLOT =~ ^[a-z0-9_]+$ ]] || die "REPLICA_SLOT=$REPLICA_SLOT: only lower-case letters, digits and _"

# as_pg runs a command as the postgres user.
as_pg() {
	if [[ $(id -u) -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

primary_sql() {
	as_pg "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$PRIMARY_USER" -d postgres -c "$1"
}

replica_sql() {
	as_pg "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$REPLICA_PORT" -U "$PRIMARY_USER" -d postgres -c "$1"
}

exists() { [[ -f $REPLICA_DIR/PG_VERSION ]]; }
running() { exists && as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" status >/dev/null 2>&1; }

# check_primary says what the primary lacks for a standby, if anything.
check_primary() {
	local settings
	settings=$(primary_sql "SELECT current_setting('wal_level'), current_setting('max_wal_senders'), current_setting('max_replication_slots')") ||
		die "cannot connect to the primary at $PRIMARY_HOST:$PRIMARY_PORT as $PRIMARY_USER"
	IFS='|' read -r level senders slots <<<"$settings"
	[[ $level == replica || $level == logical ]] || die "the primary has wal_level=$level: set wal_level=replica and restart it"
	((senders > 0)) || die "the primary has max_wal_senders=0: raise it and restart it"
	((slots > 0)) || die "the primary has max_replication_slots=0: raise it and restart it"
}

create() {
	if exists; then
		echo "replica.sh: standby exists in $REPLICA_DIR"
		start
		return
	fi
	check_primary
	# The directory belongs to postgres; its parent must let postgres in.
	mkdir -p "$REPLICA_DIR"
	[[ $(id -u) -ne 0 ]] || chown postgres: "$REPLICA_DIR"
	chmod 700 "$REPLICA_DIR"
	local slot_args=(--slot="$REPLICA_SLOT")
	if [[ -z $(primary_sql "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$REPLICA_SLOT'") ]]; then
		slot_args+=(--create-slot)
	fi
	local log
	if ! log=$(as_pg "$PG_BIN/pg_basebackup" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U "$PRIMARY_USER" \
		-D "$REPLICA_DIR" -R -X stream --checkpoint=fast "${slot_args[@]}" 2>&1); then
		rm -rf "$REPLICA_DIR"
		if grep -q 'no pg_hba.conf entry for replication' <<<"$log"; then
			die "the primary refuses replication connections from $PRIMARY_USER: add
  host replication all 127.0.0.1/32 trust
to its pg_hba.conf and reload it (SELECT pg_reload_conf()). pg_basebackup said:
$log"
		fi
		die "pg_basebackup failed:
$log"
	fi
	# A Debian cluster keeps postgresql.conf and pg_hba.conf in /etc, so the
	# copy may have neither; the standby gets its own.
	as_pg touch "$REPLICA_DIR/postgresql.conf"
	if ! grep -q "^include_if_exists = 'shoplab-replica.conf'" "$REPLICA_DIR/postgresql.conf"; then
		echo "include_if_exists = 'shoplab-replica.conf'" | as_pg tee -a "$REPLICA_DIR/postgresql.conf" >/dev/null
	fi
	as_pg tee "$REPLICA_DIR/shoplab-replica.conf" >/dev/null <<EOF
# written by scripts/replica.sh
port = $REPLICA_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$REPLICA_DIR'
hot_standby = on
# The primary keeps rows that the standby's report queries still read, so
# that vacuum on the primary does not cancel them (recovery conflicts).
hot_standby_feedback = on
# The standby reports its position every second (the primary's view of lag).
wal_receiver_status_interval = 1s
logging_collector = off
ssl = off
EOF
	if [[ ! -f $REPLICA_DIR/pg_hba.conf ]] || ! grep -q '^# written by scripts/replica.sh' "$REPLICA_DIR/pg_hba.conf"; then
		as_pg tee "$REPLICA_DIR/pg_hba.conf" >/dev/null <<EOF
# written by scripts/replica.sh
local all         all                trust
host  all         all  127.0.0.1/32  trust
host  replication all  127.0.0.1/32  trust
EOF
	fi
	as_pg touch "$REPLICA_DIR/pg_ident.conf"
	echo "replica.sh: standby of $PRIMARY_HOST:$PRIMARY_PORT created in $REPLICA_DIR (slot $REPLICA_SLOT)"
	start
}

start() {
	exists || die "no standby in $REPLICA_DIR: run create first"
	if running; then
		echo "replica.sh: standby already running on port $REPLICA_PORT"
		return
	fi
	as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" -l "$REPLICA_DIR/server.log" -w -t 60 start >/dev/null ||
		die "the standby did not start; see $REPLICA_DIR/server.log:
$(tail -n 20 "$REPLICA_DIR/server.log" 2>/dev/null)"
	echo "replica.sh: standby running on port $REPLICA_PORT"
}

stop() {
	if ! running; then
		echo "replica.sh: standby not running"
		return
	fi
	as_pg "$PG_BIN/pg_ctl" -D "$REPLICA_DIR" -m fast -w stop >/dev/null
	echo "replica.sh: standby stopped"
}

destroy() {
	if exists; then
		stop
		rm -rf "$REPLICA_DIR"
		echo "replica.sh: $REPLICA_DIR deleted"
	fi
	if primary_sql "SELECT 1" >/dev/null 2>&1; then
		primary_sql "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '$REPLICA_SLOT' AND NOT active" >/dev/null
	else
		echo "replica.sh: primary unreachable: drop slot $REPLICA_SLOT on it later, or it keeps WAL for ever" >&2
	fi
}

status() {
	if ! exists; then
		echo "absent ($REPLICA_DIR)"
		return 3
	fi
	if ! running; then
		echo "stopped ($REPLICA_DIR)"
		return 3
	fi
	replica_sql "SELECT 'running on port ' || current_setting('port') || ', in recovery: ' || pg_is_in_recovery()
  || ', receive ' || coalesce(pg_last_wal_receive_lsn()::text, '-') || ', replay ' || coalesce(pg_last_wal_replay_lsn()::text, '-')
  || ', bytes behind ' || coalesce(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text, '-')
  || ', replay paused: ' || (pg_get_wal_replay_pause_state() <> 'not paused')"
}

case ${1:-} in
create) create ;;
start) start ;;
stop) stop ;;
destroy) destroy ;;
status) status ;;
url) echo "postgres://$PRIMARY_USER@127.0.0.1:$REPLICA_PORT/$REPLICA_DB?sslmode=disable" ;;
*) die "usage: $0 create|start|stop|destroy|status|url" ;;
esac
