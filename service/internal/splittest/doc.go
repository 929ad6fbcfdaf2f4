// Package splittest holds the end-to-end test of the online users split
// (docs/schema-split.md): it walks every migration step up, and every
// reversible one down and up again, runs the backfill and the verification
// at their points, while goroutines keep checking out, creating users and
// reading order history and reports through the real HTTP router. It has no
// code outside its test.
package splittest
