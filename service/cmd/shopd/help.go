package main

import (
	"flag"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"
)

// helpConfig is `shopd help config [-markdown]`: every variable of vars
// with its default and meaning, as a table for the terminal or as the
// Markdown of the README's configuration section.
func helpConfig(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("help config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	markdown := fs.Bool("markdown", false, "print the README's configuration tables (between its config:begin and config:end marks)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *markdown {
		_, err := io.WriteString(stdout, configMarkdown())
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	section := ""
	for _, vr := range variables() {
		if vr.Section != section {
			if section != "" {
				fmt.Fprintln(tw)
			}
			section = vr.Section
			fmt.Fprintf(tw, "%s\n", section)
		}
		def, _ := vr.defaultText()
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", vr.Name, def, vr.Desc)
	}
	return tw.Flush()
}

// configMarkdown is the README's configuration tables, one per section.
func configMarkdown() string {
	var b strings.Builder
	section := ""
	for _, vr := range variables() {
		if vr.Section != section {
			section = vr.Section
			fmt.Fprintf(&b, "\n#### %s\n\n| variable | default | meaning |\n|---|---|---|\n", section)
		}
		def, literal := vr.defaultText()
		if literal {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", vr.Name, def, strings.ReplaceAll(vr.Desc, "|", `\|`))
	}
	return strings.TrimPrefix(b.String(), "\n")
}

// defaultText is the variable's default as text, and whether it is a
// value (rather than the words of its unset tag).
func (vr variable) defaultText() (string, bool) {
	d := defaultVars()
	f := vr.value(&d)
	if f.IsZero() && vr.Unset != "" {
		return vr.Unset, false
	}
	return formatValue(f), true
}

// formatValue writes a value as one would set it.
func formatValue(f reflect.Value) string {
	if f.Type() == durationType {
		return formatDuration(time.Duration(f.Int()))
	}
	if s, ok := f.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprint(f.Interface())
}

// formatDuration is d without trailing zero units: 2m rather than 2m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// printConfig is `shopd config NAME...`: the value shopd uses for each
// variable, set or default, one a line (scripts/run.sh reads
// DATABASE_URL so).
func printConfig(cfg config, names []string, stdout io.Writer) error {
	if len(names) == 0 {
		return fmt.Errorf("config needs variable names (shopd help config lists them)")
	}
	for _, name := range names {
		vr, ok := variableNamed(name)
		if !ok {
			return fmt.Errorf("config: shopd reads no variable %s (shopd help config lists them)", name)
		}
		fmt.Fprintln(stdout, formatValue(vr.value(&cfg.vars)))
	}
	return nil
}
