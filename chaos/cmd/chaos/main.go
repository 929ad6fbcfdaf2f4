// Command chaos is `make chaos`: without -scenario it lists the scenarios;
// with one it runs it at full scale (or compressed with -factor) against a
// fresh stack, prints its timeline, writes bench/results/chaos/<name>.json
// and .html, and exits non-zero naming every missed expectation.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/shoplab/shoplab/chaos"
	"github.com/shoplab/shoplab/internal/benchkit"
)

func main() { benchkit.Main("chaos", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("scenario", "", "scenario to run (empty: list them)")
	opt := chaos.Options{Log: stdout}
	fs.StringVar(&opt.Shopd, "shopd", "bin/shopd", "shopd binary to start")
	fs.StringVar(&opt.Server, "server", benchkit.DefaultServer(), "PostgreSQL server to create the database on")
	fs.Float64Var(&opt.Factor, "factor", 1, fmt.Sprintf("time compression: 1 is full scale; %d is go test's (compressed phases, monitor windows / factor)", chaos.Factor))
	fs.BoolVar(&opt.NoFault, "no-fault", false, "run without the fault: the expectations must then fail")
	fs.StringVar(&opt.Root, "root", ".", "repository root (monitors/, runbooks/, chaos/expectations/)")
	out := fs.String("out", "bench/results/chaos", "directory of the results (<scenario>.json and .html)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SCENARIO\tINCIDENT\tFULL SCALE\tWHAT")
		for _, s := range chaos.Scenarios() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, strings.SplitN(s.Incident, ",", 2)[0], s.Full.Total(), s.Summary)
		}
		tw.Flush()
		fmt.Fprintln(stdout, "\nrun one: make chaos SCENARIO=<name>")
		return nil
	}
	sc := chaos.Find(*name)
	if sc == nil {
		return fmt.Errorf("no scenario %q (make chaos lists them)", *name)
	}
	rep, err := chaos.Run(ctx, sc, opt)
	if err != nil {
		return err
	}
	rep.PrintTimeline(stdout)
	j, h, err := rep.Write(*out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nresults: %s, %s\n", j, h)
	if !rep.OK {
		return errors.New(sc.Name + ": missed expectations:\n  " + strings.Join(rep.Failures, "\n  "))
	}
	return nil
}
