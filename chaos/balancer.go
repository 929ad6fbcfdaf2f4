package chaos

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
)

// balancer is a tiny in-process HTTP load balancer in front of the shopd
// processes of a Balanced scenario: round robin over the backends in
// service, as a real load balancer does. Drain takes a backend out of
// service (a target deregistered, or failing its readiness check) before it
// is stopped; a backend whose listener is closed (connection refused:
// nothing was sent) is skipped and the request tried on the next one.
type balancer struct {
	srv *http.Server
	url string

	mu       sync.Mutex
	backends []*backend
	next     int
}

// backend is one shopd behind the balancer.
type backend struct {
	url      string
	proxy    *httputil.ReverseProxy
	draining bool
	inFlight atomic.Int64
}

// refusedKey is the context key of the flag that a backend refused the
// connection: nothing reached it, so the request can go to another one.
type refusedKey struct{}

func startBalancer() (*balancer, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &balancer{url: "http://" + l.Addr().String()}
	b.srv = &http.Server{Handler: b}
	go func() { _ = b.srv.Serve(l) }()
	return b, nil
}

func (b *balancer) close() { _ = b.srv.Close() }

// add puts a backend in service.
func (b *balancer) add(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	be := &backend{url: rawURL}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	be.proxy = &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(u); r.Out.Host = r.In.Host },
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if refused, ok := r.Context().Value(refusedKey{}).(*bool); ok && errors.Is(err, syscall.ECONNREFUSED) {
				*refused = true // ServeHTTP tries the next backend
				return
			}
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	b.mu.Lock()
	b.backends = append(b.backends, be)
	b.mu.Unlock()
	return nil
}

// drain takes the backend at rawURL out of service and returns how many
// requests it is still serving.
func (b *balancer) drain(rawURL string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, be := range b.backends {
		if be.url == rawURL {
			be.draining = true
			return be.inFlight.Load()
		}
	}
	return 0
}

// inFlight is how many requests the backend at rawURL is serving.
func (b *balancer) inFlight(rawURL string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, be := range b.backends {
		if be.url == rawURL {
			return be.inFlight.Load()
		}
	}
	return 0
}

// pick returns the next backend in service after skip ones were refused.
func (b *balancer) pick(skip map[*backend]bool) *backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	for range b.backends {
		be := b.backends[b.next%len(b.backends)]
		b.next++
		if !be.draining && !skip[be] {
			return be
		}
	}
	return nil
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tried := map[*backend]bool{}
	for {
		be := b.pick(tried)
		if be == nil {
			http.Error(w, "no backend in service", http.StatusServiceUnavailable)
			return
		}
		tried[be] = true
		if b.serve(be, w, r) {
			return
		}
	}
}

// serve proxies r to be; false when be refused the connection (nothing was
// sent or written: the caller tries another backend).
func (b *balancer) serve(be *backend, w http.ResponseWriter, r *http.Request) bool {
	be.inFlight.Add(1)
	defer be.inFlight.Add(-1)
	if r.Body != nil && r.Body != http.NoBody {
		// Keep the body so that a refused attempt can be retried: the
		// transport has not read it when the dial fails, but the
		// ReverseProxy closes it.
		r.Body = &keepOpen{ReadCloser: r.Body}
	}
	refused := false
	be.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), refusedKey{}, &refused)))
	return !refused
}

// keepOpen ignores Close, so that a request body survives a refused
// attempt.
type keepOpen struct{ io.ReadCloser }

func (k *keepOpen) Close() error { return nil }
