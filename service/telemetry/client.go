package telemetry

import "strings"

// Client families: the values of the client tag. The set is closed so that
// a metric tagged with it has a bounded cardinality whatever User-Agent
// headers clients send.
const (
	ClientCurl    = "curl"
	ClientNode    = "node"
	ClientPython  = "python"
	ClientGo      = "go"
	ClientBrowser = "browser"
	ClientOther   = "other"
)

// clientPrefixes maps lower-cased User-Agent prefixes (product tokens) to
// families. Checked in order, before the browser test.
var clientPrefixes = []struct{ prefix, family string }{
	{"curl/", ClientCurl},
	{"node", ClientNode}, // node, node-fetch, "node.js"
	{"axios/", ClientNode},
	{"undici", ClientNode},
	{"got ", ClientNode},
	{"python", ClientPython}, // python-requests, python-urllib, python-httpx
	{"aiohttp/", ClientPython},
	{"httpx/", ClientPython},
	{"go-http-client/", ClientGo},
	{"go ", ClientGo},
}

// ClientFamily classifies a User-Agent header into one of the Client*
// values: curl, node, python, go, browser (Mozilla/... and Opera/...), or
// other (including an empty header).
func ClientFamily(userAgent string) string {
	ua := strings.ToLower(strings.TrimSpace(userAgent))
	for _, p := range clientPrefixes {
		if strings.HasPrefix(ua, p.prefix) {
			return p.family
		}
	}
	if strings.HasPrefix(ua, "mozilla/") || strings.HasPrefix(ua, "opera/") {
		return ClientBrowser
	}
	return ClientOther
}
