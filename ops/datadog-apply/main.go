// Command datadog-apply creates or updates shoplab's Datadog dashboards,
// monitors and SLOs from the JSON files in the repository, through
// datadog-api-client-go. Every object carries a stable id, so a re-run
// updates what it created instead of creating a copy:
//
//   - a monitor or an SLO has the tag shoplab_id:<file name without .json>;
//   - a dashboard has the token shoplab_id:<file name without .json> in its
//     description.
//
// It is a dry run by default: it reads the remote state and prints, per
// object, "create", "update (fields: ...)" or "unchanged". With -apply it
// writes. Credentials come from DD_API_KEY and DD_APP_KEY, the site from
// DD_SITE (default datadoghq.com); -endpoint (or DD_API_URL) points the
// client at another base URL, which the tests use.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadog"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "datadog-apply:", err)
		os.Exit(1)
	}
}

// options is the command line once parsed.
type options struct {
	apply      bool
	dashboards []string
	monitors   []string
	slos       []string
	endpoint   string
}

// run is the whole program; main only calls it. It keeps no package-level
// state, so tests run it side by side against their own fake API.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	name := "datadog-apply"
	if len(args) > 0 {
		args = args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opt                      options
		dashboards, monitors, sl string
	)
	fs.BoolVar(&opt.apply, "apply", false, "write the changes (default: dry run, print what would change)")
	fs.StringVar(&dashboards, "dashboards", "dashboards", "comma-separated folders of dashboard JSON files")
	fs.StringVar(&monitors, "monitors", "monitors", "comma-separated folders of monitor JSON files")
	fs.StringVar(&sl, "slos", "slos,monitors/slos", "comma-separated folders of SLO JSON files")
	fs.StringVar(&opt.endpoint, "endpoint", getenv("DD_API_URL"), "base URL of the Datadog API instead of https://api.$DD_SITE (env DD_API_URL)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s [-apply] [flags]\n\n"+
			"Creates or updates every dashboard, monitor and SLO; a dry run unless -apply.\n"+
			"environment: DD_API_KEY, DD_APP_KEY (required), DD_SITE (default datadoghq.com), DD_API_URL\n\nflags:\n", name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (flags only)", fs.Args())
	}
	opt.dashboards, opt.monitors, opt.slos = splitList(dashboards), splitList(monitors), splitList(sl)

	// Keys first: even a dry run reads the remote state.
	var missing []string
	for _, k := range []string{"DD_API_KEY", "DD_APP_KEY"} {
		if strings.TrimSpace(getenv(k)) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s in the environment (a dry run reads the remote state too)", strings.Join(missing, " and "))
	}
	site := getenv("DD_SITE")
	if site == "" {
		site = "datadoghq.com"
	}

	cfg := datadog.NewConfiguration()
	cfg.HTTPClient = &http.Client{Timeout: time.Minute}
	if opt.endpoint != "" {
		// Every operation this tool calls uses Servers (none of them is in
		// OperationServers); a server without variables is its URL as is.
		cfg.Servers = datadog.ServerConfigurations{{URL: strings.TrimRight(opt.endpoint, "/")}}
		cfg.OperationServers = nil
	}
	ctx = context.WithValue(ctx, datadog.ContextAPIKeys, map[string]datadog.APIKey{
		"apiKeyAuth": {Key: getenv("DD_API_KEY")},
		"appKeyAuth": {Key: getenv("DD_APP_KEY")},
	})
	ctx = context.WithValue(ctx, datadog.ContextServerVariables, map[string]string{"site": site})
	// The URL the client will call; a DD_SITE it does not know fails here.
	url, err := cfg.ServerURLWithContext(ctx, "v1.DashboardsApi.ListDashboards")
	if err != nil {
		return fmt.Errorf("DD_SITE %q: %w", site, err)
	}
	fmt.Fprintf(stdout, "datadog api %s (%s)\n", url, map[bool]string{false: "dry run", true: "apply"}[opt.apply])

	objs, err := loadAll(opt, stdout)
	if err != nil {
		return err
	}
	client := datadog.NewAPIClient(cfg)
	return reconcile(ctx, newRemote(client), objs, opt.apply, stdout)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
