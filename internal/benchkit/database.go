// Package benchkit is the plumbing the benchmark programs under bench/
// share: the PostgreSQL server to use, a fresh migrated database per run,
// shopd started as a subprocess on a free port of 127.0.0.1, its resident
// memory read from /proc (and any process's CPU time and parent), and the
// JSON results file.
//
// Nothing here returns *shop.Error: these are tools, not stores; every
// function returns plain errors with their cause wrapped.
package benchkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shoplab/shoplab/service/postgres"
)

// LocalServer is the local PostgreSQL's URL, the last resort of
// DefaultServer.
const LocalServer = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// DefaultServer is the PostgreSQL server a bench creates its database on
// unless told otherwise: $BENCH_DATABASE_URL, else $TEST_DATABASE_URL, else
// LocalServer. It is the URL of any database on that server.
func DefaultServer() string {
	for _, k := range []string{"BENCH_DATABASE_URL", "TEST_DATABASE_URL"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return LocalServer
}

// Redact returns dsn fit for output: a password in its user information or
// in its query (?password=...) is replaced by "xxxxx". A dsn that is not a
// URL is replaced by "(database url)" whole, since it cannot be taken apart.
func Redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "(database url)"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// dropTimeout bounds Drop, which runs after the bench's own context may
// have ended.
const dropTimeout = 30 * time.Second

// Database is a database created for one bench run by CreateDatabase.
type Database struct {
	// Name is the database's name: shoplab_bench_<label>_<random hex>.
	Name string
	// URL connects to it: the server's URL with the database replaced.
	URL string

	server string
	once   sync.Once
}

var labelRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,20}$`)

// CreateDatabase creates the database shoplab_bench_<label>_<12 random hex
// digits> on the server that serverURL names (see DefaultServer) and
// migrates it up with the service's migrations (postgres.Migrate, the same
// that `shopd migrate up` runs). The caller must Drop it, usually with
// defer, unless it means to keep it. A failure after the database was
// created drops it again. label is lower case letters, digits and _.
// Errors name the server with Redact.
func CreateDatabase(ctx context.Context, serverURL, label string) (*Database, error) {
	return createDatabase(ctx, serverURL, label, "")
}

// CloneDatabase is CreateDatabase from a copy of template, a database on
// the same server that nobody is connected to (CREATE DATABASE ...
// TEMPLATE: files are copied, nothing is migrated): a migrated and seeded
// database made once and cloned for each run of a series.
func CloneDatabase(ctx context.Context, serverURL, label, template string) (*Database, error) {
	if template == "" {
		return nil, errors.New("clone database: no template")
	}
	return createDatabase(ctx, serverURL, label, template)
}

func createDatabase(ctx context.Context, serverURL, label, template string) (*Database, error) {
	if !labelRE.MatchString(label) {
		return nil, fmt.Errorf("database label %q: want lower case letters, digits and _", label)
	}
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server URL %s: not a URL", Redact(serverURL))
	}
	admin, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", Redact(serverURL), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	var b [6]byte
	_, _ = rand.Read(b[:])
	d := &Database{Name: "shoplab_bench_" + label + "_" + hex.EncodeToString(b[:]), server: serverURL}
	create := "CREATE DATABASE " + pgx.Identifier{d.Name}.Sanitize()
	if template != "" {
		create += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if _, err := admin.Exec(ctx, create); err != nil {
		return nil, fmt.Errorf("create database %s on %s: %w", d.Name, Redact(serverURL), err)
	}
	u.Path = "/" + d.Name
	d.URL = u.String()
	if template != "" {
		return d, nil
	}
	if err := migrate(ctx, d.URL); err != nil {
		d.Drop()
		return nil, fmt.Errorf("migrate %s: %w", d.Name, err)
	}
	return d, nil
}

func migrate(ctx context.Context, dsn string) error {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()
	return postgres.Migrate(ctx, pool, "up", io.Discard)
}

// Drop drops the database WITH (FORCE), ending the sessions still
// connected to it. It has a bound of its own (30 s), independent of the
// bench's context, so that it also cleans up after a timeout or an
// interrupt. A failure is reported on stderr: a bench database left behind
// on a shared server must not go unnoticed. Only the first call does
// anything.
func (d *Database) Drop() {
	d.once.Do(func() {
		if err := d.drop(); err != nil {
			fmt.Fprintf(os.Stderr, "benchkit: drop database %s: %v\n", d.Name, err)
		}
	})
}

func (d *Database) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
	defer cancel()
	c, err := pgx.Connect(ctx, d.server)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", Redact(d.server), err)
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.Name}.Sanitize()+" WITH (FORCE)")
	return err
}

// WriteJSON writes v to path as indented JSON (two spaces) ending with a
// newline, creating path's directory if need be. It returns the error of
// whichever step failed.
func WriteJSON(path string, v any) error {
	if path == "" {
		return errors.New("no path for the JSON results")
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
