// Package pgproc holds what the code that starts PostgreSQL's own programs
// (initdb, pg_ctl, postgres, pgbouncer, pg_autoctl) for tests, benches and
// chaos scenarios shares: a free port of 127.0.0.1 to give them, and, since
// those programs refuse to run as root, the postgres user to run them as
// when this process is root (CI), with the directories they write given to
// that user.
//
// How a caller runs a program as that user is its own choice: with
// PostgresCredential in exec.Cmd's SysProcAttr, or through
// `runuser -u postgres`; either way the directories are chowned with Chown.
package pgproc

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago (the
// kernel's pick for a listener on port 0, closed again). Another process
// may take it before the caller binds it.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PostgresCredential returns the credential (uid and gid) of the postgres
// user when this process is root, and nil when it is not (the programs then
// run as the current user). Its error, when there is no postgres user, is
// user.Lookup's, for the caller to say what needed it. The caller sets
// NoSetGroups as it needs.
func PostgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	return credentialOf("postgres")
}

// credentialOf returns the credential of the user name.
func credentialOf(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgproc: uid %q of user %s: %w", u.Uid, name, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgproc: gid %q of user %s: %w", u.Gid, name, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Chown gives path to cred's user and group, so that a program run with
// cred can write there. With a nil cred (not root) it does nothing.
func Chown(cred *syscall.Credential, path string) error {
	if cred == nil {
		return nil
	}
	return os.Chown(path, int(cred.Uid), int(cred.Gid))
}
