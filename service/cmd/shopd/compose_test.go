package main

import (
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.yaml.in/yaml/v3"
)

// composeFile is the part of docker-compose.yml the test reads.
type composeFile struct {
	Services map[string]struct {
		Image       string            `yaml:"image"`
		Profiles    []string          `yaml:"profiles"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Entrypoint  []string          `yaml:"entrypoint"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
	} `yaml:"services"`
}

// TestComposeScaleProfile checks docker-compose.yml without a Docker engine:
// the `scale` profile adds the replica, PgBouncer and shopd instances that
// reach postgres through PgBouncer (exec mode, which pgx parses) and read
// reports from the replica; the default services need none of them; every
// file mounted from the repository exists (scripts executable); every
// variable given to shopd is one of its configuration.
func TestComposeScaleProfile(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	b, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	scale := map[string]bool{"replica": true, "pgbouncer": true, "shopd-scale": true}
	for name, s := range c.Services {
		inScale := slices.Contains(s.Profiles, "scale")
		if scale[name] != inScale {
			t.Errorf("service %s: profiles %v; want scale only for %v", name, s.Profiles, []string{"replica", "pgbouncer", "shopd-scale"})
		}
		for dep := range s.DependsOn {
			d, ok := c.Services[dep]
			if !ok {
				t.Errorf("service %s depends on %s, which does not exist", name, dep)
			} else if len(d.Profiles) > 0 && len(s.Profiles) == 0 {
				t.Errorf("service %s (every profile) depends on %s (profiles %v): compose up fails without them", name, dep, d.Profiles)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.HasPrefix(src, "./") {
				continue
			}
			fi, err := os.Stat(filepath.Join(root, src))
			switch {
			case err != nil:
				t.Errorf("service %s mounts %s: %v", name, src, err)
			case strings.HasSuffix(src, ".sh") && fi.Mode()&0o111 == 0:
				t.Errorf("service %s mounts %s, which is not executable", name, src)
			}
		}
		if strings.HasPrefix(s.Image, "shoplab/shopd") {
			for k := range s.Environment {
				if _, ok := variableNamed(k); !ok && k != "DD_ENV" {
					t.Errorf("service %s: %s is not a shopd variable (config.go)", name, k)
				}
			}
		}
	}
	for name := range scale {
		if _, ok := c.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}

	app := c.Services["shopd-scale"].Environment
	pc, err := pgxpool.ParseConfig(app["DATABASE_URL"])
	if err != nil {
		t.Fatalf("shopd-scale DATABASE_URL: %v", err)
	}
	if pc.ConnConfig.Host != "pgbouncer" || pc.ConnConfig.DefaultQueryExecMode != pgx.QueryExecModeExec {
		t.Errorf("shopd-scale DATABASE_URL: host %s, exec mode %v; want pgbouncer and exec", pc.ConnConfig.Host, pc.ConnConfig.DefaultQueryExecMode)
	}
	if u, err := url.Parse(app["REPORTS_DATABASE_URL"]); err != nil || u.Hostname() != "replica" {
		t.Errorf("shopd-scale REPORTS_DATABASE_URL %q: want the replica", app["REPORTS_DATABASE_URL"])
	}
	if mode := c.Services["pgbouncer"].Environment["POOL_MODE"]; mode != "transaction" {
		t.Errorf("pgbouncer POOL_MODE %q, want transaction", mode)
	}
	if u, err := url.Parse(c.Services["pgbouncer"].Environment["DATABASE_URL"]); err != nil || u.Hostname() != "postgres" {
		t.Errorf("pgbouncer DATABASE_URL: want postgres")
	}
	if d := c.Services["replica"].DependsOn["postgres"]; d.Condition != "service_healthy" {
		t.Errorf("replica: depends on postgres %+v, want service_healthy", d)
	}
	role, err := os.ReadFile(filepath.Join(root, "ops", "compose", "replication-role.sh"))
	if err != nil || !strings.Contains(string(role), "CREATE ROLE replicator WITH REPLICATION") ||
		!strings.Contains(string(role), "host replication replicator") || c.Services["replica"].Environment["PGPASSWORD"] != "replicator" {
		t.Errorf("the replica's role: replication-role.sh must create replicator (with a pg_hba line) and the replica use its password: %v", err)
	}
}
