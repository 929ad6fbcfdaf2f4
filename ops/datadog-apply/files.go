package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/DataDog/datadog-api-client-go/v2/api/datadogV1"
)

// kind is the sort of Datadog object a file holds.
type kind string

const (
	kindDashboard kind = "dashboard"
	kindMonitor   kind = "monitor"
	kindSLO       kind = "slo"
)

// idPrefix starts the stable id: a tag on monitors and SLOs, a token in a
// dashboard's description.
const idPrefix = "shoplab_id:"

// validID is what a file name (without .json) must look like to be its id.
// Datadog lowercases tags and a tag starts with a letter, so any other name
// would come back different and never match on the next run.
var validID = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`)

// idToken finds the shoplab_id:<name> tokens in a dashboard description.
var idToken = regexp.MustCompile(`shoplab_id:([A-Za-z0-9_.-]+)`)

// readOnly lists, per kind, the top-level fields Datadog sets itself. An
// exported file may carry them; they are neither sent nor compared.
var readOnly = map[kind][]string{
	kindDashboard: {"id", "author_handle", "author_name", "created_at", "modified_at", "url"},
	kindMonitor: {"id", "created", "modified", "creator", "overall_state", "overall_state_modified",
		"deleted", "matching_downtimes", "multi", "org_id", "state"},
	kindSLO: {"id", "created_at", "modified_at", "creator"},
}

// object is one file to apply.
type object struct {
	kind kind
	name string // the stable id: the file name without .json
	file string
	body []byte // the file without its read-only fields: what is sent
	want any    // body as the client's model serialises it, as generic JSON
}

// loadAll reads every *.json of every folder in opt, in the order
// dashboards, monitors, SLOs. A folder that does not exist is skipped (the
// SLOs may live in slos/ or monitors/slos/); no file at all is an error.
func loadAll(opt options, stdout io.Writer) ([]*object, error) {
	var all []*object
	var read []string
	for _, g := range []struct {
		kind kind
		dirs []string
	}{{kindDashboard, opt.dashboards}, {kindMonitor, opt.monitors}, {kindSLO, opt.slos}} {
		seen := map[string]string{}
		for _, dir := range g.dirs {
			if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
				continue
			}
			files, err := filepath.Glob(filepath.Join(dir, "*.json"))
			if err != nil {
				return nil, err
			}
			slices.Sort(files)
			for _, f := range files {
				o, err := loadFile(g.kind, f)
				if err != nil {
					return nil, err
				}
				if prev, ok := seen[o.name]; ok {
					return nil, fmt.Errorf("%s and %s both have the id %s%s", prev, f, idPrefix, o.name)
				}
				seen[o.name] = f
				all = append(all, o)
			}
			read = append(read, fmt.Sprintf("%d %s (%s)", len(files), plural(g.kind, len(files)), dir))
		}
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("no JSON files in %s", strings.Join(slices.Concat(opt.dashboards, opt.monitors, opt.slos), ", "))
	}
	fmt.Fprintf(stdout, "read %s\n", strings.Join(read, ", "))
	return all, nil
}

func plural(k kind, n int) string {
	s := string(k)
	if k == kindSLO {
		s = "SLO"
	}
	if n == 1 {
		return s
	}
	return s + "s"
}

// loadFile reads one file, checks its stable id, drops its read-only fields
// and checks that it decodes into the client's model.
func loadFile(k kind, path string) (*object, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return nil, fmt.Errorf("%s: not a JSON object: %v", path, err)
	}
	name := strings.TrimSuffix(filepath.Base(path), ".json")
	if !validID.MatchString(name) {
		return nil, fmt.Errorf("%s: the file name %q is its id %s%s, which must be lowercase letters, digits, _ . - and start with a letter (Datadog lowercases tags)", path, name, idPrefix, name)
	}
	if err := checkID(k, name, doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, f := range readOnly[k] {
		delete(doc, f)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var m any
	switch k {
	case kindDashboard:
		var d datadogV1.Dashboard
		err, m = decodeModel(body, &d, &d.UnparsedObject), &d
	case kindMonitor:
		var mo datadogV1.Monitor
		err, m = decodeModel(body, &mo, &mo.UnparsedObject), &mo
	case kindSLO:
		var s datadogV1.ServiceLevelObjective
		err, m = decodeModel(body, &s, &s.UnparsedObject), &s
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	want, err := generic(m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &object{kind: k, name: name, file: path, body: body, want: want}, nil
}

// decodeModel decodes body into one of the client's models and fails when
// the model could not parse it (it then keeps the raw JSON in
// UnparsedObject instead of failing).
func decodeModel(body []byte, v any, unparsed *map[string]any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("does not decode into %s: %v", typeName(v), err)
	}
	if *unparsed != nil {
		return fmt.Errorf("%s could not parse it (a wrong type or an unknown enum value)", typeName(v))
	}
	return nil
}

// checkID checks that the file carries its stable id, and no other.
func checkID(k kind, name string, doc map[string]any) error {
	want := idPrefix + name
	var found []string
	switch k {
	case kindDashboard:
		desc, _ := doc["description"].(string)
		for _, m := range idToken.FindAllStringSubmatch(desc, -1) {
			found = append(found, idPrefix+m[1])
		}
		if len(found) == 0 {
			return fmt.Errorf("its description has no token %s (every dashboard carries its id there, so a re-run updates it instead of creating a copy)", want)
		}
	default:
		tags, _ := doc["tags"].([]any)
		for _, t := range tags {
			if s, ok := t.(string); ok && strings.HasPrefix(s, idPrefix) {
				found = append(found, s)
			}
		}
		if len(found) == 0 {
			return fmt.Errorf("its tags have no %s (every %s carries its id as a tag, so a re-run updates it instead of creating a copy)", want, k)
		}
	}
	if len(found) != 1 || found[0] != want {
		return fmt.Errorf("it carries %s, want exactly %s (the file name)", strings.Join(found, ", "), want)
	}
	return nil
}

// generic serialises one of the client's models and decodes it back as
// plain JSON values (numbers as json.Number), the form diff compares.
func generic(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out, nil
}

func typeName(v any) string { return strings.TrimPrefix(fmt.Sprintf("%T", v), "*") }
