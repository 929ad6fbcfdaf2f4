package pgproc

import (
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"testing"
)

func TestFreePort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if port <= 0 || port > 65535 {
		t.Fatalf("FreePort = %d, want a port number", port)
	}
	// It was free: a listener can take it now.
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("listen on the port FreePort gave: %v", err)
	}
	l.Close()
}

func TestPostgresCredential(t *testing.T) {
	cred, err := PostgresCredential()
	if os.Geteuid() != 0 {
		if cred != nil || err != nil {
			t.Fatalf("not root: PostgresCredential = %+v, %v; want nil, nil", cred, err)
		}
		return
	}
	u, lookupErr := user.Lookup("postgres")
	if lookupErr != nil {
		if err == nil {
			t.Fatalf("root without a postgres user: PostgresCredential = %+v, want an error", cred)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if strconv.Itoa(int(cred.Uid)) != u.Uid || strconv.Itoa(int(cred.Gid)) != u.Gid {
		t.Fatalf("PostgresCredential = uid %d gid %d, want the postgres user's %s %s", cred.Uid, cred.Gid, u.Uid, u.Gid)
	}
	if cred.NoSetGroups || cred.Groups != nil {
		t.Fatalf("PostgresCredential = %+v, want only uid and gid set", cred)
	}
}

func TestCredentialOfUnknownUser(t *testing.T) {
	if _, err := credentialOf("shoplab-pgproc-no-such-user"); err == nil {
		t.Fatal("credentialOf an unknown user: no error")
	}
}

func TestChown(t *testing.T) {
	dir := t.TempDir()
	before := owner(t, dir)
	if err := Chown(nil, dir); err != nil {
		t.Fatalf("Chown(nil): %v", err)
	}
	if got := owner(t, dir); got.Uid != before.Uid || got.Gid != before.Gid {
		t.Fatalf("Chown(nil) changed the owner from %d:%d to %d:%d", before.Uid, before.Gid, got.Uid, got.Gid)
	}
	// Giving the directory to its current owner works as any user; as
	// root, giving it to another user must show in its owner too.
	want := &syscall.Credential{Uid: before.Uid, Gid: before.Gid}
	if os.Geteuid() == 0 {
		want = &syscall.Credential{Uid: 12345, Gid: 12346}
	}
	if err := Chown(want, dir); err != nil {
		t.Fatal(err)
	}
	if got := owner(t, dir); got.Uid != want.Uid || got.Gid != want.Gid {
		t.Fatalf("after Chown(%d:%d) the owner is %d:%d", want.Uid, want.Gid, got.Uid, got.Gid)
	}
}

func owner(t *testing.T, path string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}
