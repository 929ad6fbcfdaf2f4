package telemetry_test

import (
	"strings"
	"testing"

	"github.com/shoplab/shoplab/service/telemetry"
)

func TestClientFamily(t *testing.T) {
	t.Parallel()
	for ua, want := range map[string]string{
		"curl/8.5.0":             telemetry.ClientCurl,
		"node-fetch/1.0":         telemetry.ClientNode,
		"axios/1.7.2":            telemetry.ClientNode,
		"node":                   telemetry.ClientNode,
		"undici":                 telemetry.ClientNode,
		"python-requests/2.31.0": telemetry.ClientPython,
		"Python-urllib/3.12":     telemetry.ClientPython,
		"python-httpx/0.27.0":    telemetry.ClientPython,
		"Go-http-client/1.1":     telemetry.ClientGo,
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15": telemetry.ClientBrowser,
		"Opera/9.80":              telemetry.ClientBrowser,
		"":                        telemetry.ClientOther,
		"PostmanRuntime/7.39":     telemetry.ClientOther,
		strings.Repeat("x", 1000): telemetry.ClientOther,
	} {
		if got := telemetry.ClientFamily(ua); got != want {
			t.Errorf("ClientFamily(%.30q) = %q, want %q", ua, got, want)
		}
	}
}
