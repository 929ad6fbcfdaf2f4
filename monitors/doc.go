// Package monitors holds shoplab's Datadog monitors as JSON, one file per
// monitor, exactly as the Monitors API (v1) accepts them. The package has no
// code: its test (validate_test.go) checks these files together with the
// dashboards in ../dashboards, the SLOs in ../slos, the runbooks in
// ../runbooks and the catalogues in ../docs (metrics.md, incidents.md), so
// that none of them can drift from the others. It runs in `make test`.
package monitors
