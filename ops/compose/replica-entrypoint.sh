#!/bin/bash
# The `scale` profile's read replica: on first start, a physical copy of the
# primary (pg_basebackup -R: standby.signal and primary_conninfo) through
# the replication slot shoplab_compose_replica, then a hot standby that
# streams from it. A restart keeps its data directory and resumes
# streaming. scripts/replica.sh does the same on a machine without Docker.
set -euo pipefail
: "${PRIMARY_HOST:=postgres}"
: "${REPLICA_SLOT:=shoplab_compose_replica}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	until pg_isready -h "$PRIMARY_HOST" -U replicator -q; do sleep 1; done
	backup() { pg_basebackup -h "$PRIMARY_HOST" -U replicator -D "$PGDATA" -R -X stream --checkpoint=fast "$@"; }
	# The slot survives a replica whose volume was dropped: reuse it then.
	if ! backup --create-slot --slot="$REPLICA_SLOT"; then
		rm -rf "${PGDATA:?}"/*
		backup --slot="$REPLICA_SLOT"
	fi
	chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on -c hot_standby_feedback=on -c wal_receiver_status_interval=1s
