package pgcluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplicaScript: scripts/replica.sh makes a standby that replays the
// primary's writes, and each verb is idempotent: create on an existing
// standby, stop on a stopped one, start on a running one, destroy on an
// absent one do nothing and succeed; destroy drops the slot.
func TestReplicaScript(t *testing.T) {
	t.Parallel()
	primary := Primary(t)
	standby := Standby(t, primary)
	primary.Exec(t, "postgres", `CREATE TABLE t (n int); INSERT INTO t VALUES (42)`)
	standby.WaitReplayed(t)
	var n int
	var recovery bool
	if err := standby.Connect(t, "postgres").QueryRow(t.Context(), `SELECT n, pg_is_in_recovery() FROM t`).Scan(&n, &recovery); err != nil || n != 42 || !recovery {
		t.Fatalf("standby: n %d, in recovery %v, %v; want 42, true", n, recovery, err)
	}
	step := func(verb, want string, wantErr bool) {
		t.Helper()
		out, err := standby.Script(t.Context(), verb)
		if (err != nil) != wantErr || !strings.Contains(out, want) {
			t.Errorf("replica.sh %s: %q, %v; want %q (error %v)", verb, out, err, want, wantErr)
		}
	}
	step("create", "standby exists", false)
	step("status", "in recovery: true", false)
	step("stop", "standby stopped", false)
	step("stop", "not running", false)
	step("status", "stopped", true)
	step("start", "standby running", false)
	step("start", "already running", false)
	step("destroy", "deleted", false)
	step("destroy", "", false)
	step("status", "absent", true)
	var slots int
	if err := primary.Connect(t, "postgres").QueryRow(t.Context(), `SELECT count(*) FROM pg_replication_slots`).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("%d slots left on the primary after destroy (%v)", slots, err)
	}
	step("create", "created", false) // for the cleanup's destroy
}

// TestReplicaScriptNoReplicationEntry: against a primary whose pg_hba.conf
// has no replication line, create fails, says which line to add, and
// leaves neither a directory nor a slot behind.
func TestReplicaScriptNoReplicationEntry(t *testing.T) {
	t.Parallel()
	primary := Primary(t)
	hba := filepath.Join(primary.Dir, "pg_hba.conf")
	b, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && !strings.HasPrefix(f[0], "#") && f[1] == "replication" {
			continue
		}
		kept = append(kept, line)
	}
	if err := os.WriteFile(hba, []byte(strings.Join(kept, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	primary.Exec(t, "postgres", `SELECT pg_reload_conf()`)
	c := &Cluster{Dir: filepath.Join(tempDir(t), "standby"), Port: FreePort(t), primary: primary, slot: "pgcluster_refused"}
	out, err := c.Script(t.Context(), "create")
	if err == nil || !strings.Contains(out, "host replication all 127.0.0.1/32 trust") {
		t.Errorf("create: %v\n%s\nwant a failure naming the pg_hba.conf line", err, out)
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind (%v)", c.Dir, err)
	}
	var slots int
	if err := primary.Connect(t, "postgres").QueryRow(t.Context(), `SELECT count(*) FROM pg_replication_slots`).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("%d slots on the primary after a failed create (%v)", slots, err)
	}
}
