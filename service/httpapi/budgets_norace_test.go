//go:build !race

package httpapi_test

// raceSuffix is empty without the race detector (see budgets_race_test.go).
const raceSuffix = ""
