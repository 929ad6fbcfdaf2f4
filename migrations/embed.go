// Package migrations embeds the goose SQL migrations of the shoplab schema so
// that the shopd binary can migrate a database without any file on disk.
package migrations

import "embed"

// FS holds every *.sql migration, in goose's numbered order.
//
//go:embed *.sql
var FS embed.FS
