package benchkit

import (
	"bufio"
	"os"
	"path/filepath"
	"sync"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/tsenart/vegeta/v12/lib/plot"
)

// Plot is an HTML latency plot of vegeta results over time (vegeta's own
// plot package, as `vegeta plot` draws it): one series per attack name
// (the name passed to Attacker.Attack), errors apart. Add is safe for
// concurrent use.
type Plot struct {
	mu sync.Mutex
	p  *plot.Plot
}

// NewPlot returns an empty plot titled title.
func NewPlot(title string) *Plot {
	return &Plot{p: plot.New(plot.Title(title), plot.Downsample(4000), plot.Label(func(r *vegeta.Result) string {
		if r.Error != "" {
			return r.Attack + " (error)"
		}
		return r.Attack
	}))}
}

// Add adds one result; a nil Plot ignores it.
func (p *Plot) Add(r *vegeta.Result) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.p.Add(r)
}

// WriteFile writes the plot as a self-contained HTML page to path,
// creating its directory. It returns the error of whichever step failed.
func (p *Plot) WriteFile(path string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.p.Close()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if _, err := p.p.WriteTo(w); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
