package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDockerImage keeps the Dockerfile's toolchain on go.mod's `go` line, and
// its build context free of what it does not need while keeping what it
// copies (.dockerignore).
func TestDockerImage(t *testing.T) {
	root := filepath.Join("..", "..", "..")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	gomod, dockerfile, ignore := read("go.mod"), read("Dockerfile"), read(".dockerignore")

	want := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(gomod)
	got := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`).FindStringSubmatch(dockerfile)
	if want == nil || got == nil {
		t.Fatalf("go.mod's go line (%v) or the Dockerfile's ARG GO_VERSION (%v) is missing", want, got)
	}
	if got[1] != want[1] {
		t.Errorf("Dockerfile builds with Go %s but go.mod says go %s: set ARG GO_VERSION=%s", got[1], want[1], want[1])
	}

	ignored := map[string]bool{}
	for _, line := range strings.Split(ignore, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			ignored[strings.TrimSuffix(strings.TrimPrefix(line, "/"), "/")] = true
		}
	}
	for _, need := range []string{".git", "bin", "tools/squawk/node_modules"} {
		if !ignored[need] {
			t.Errorf(".dockerignore does not exclude %s", need)
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^COPY (\S+)`).FindAllStringSubmatch(dockerfile, -1) {
		if src := strings.TrimSuffix(m[1], "/"); ignored[src] {
			t.Errorf("the Dockerfile copies %s, which .dockerignore excludes", src)
		}
	}
}
