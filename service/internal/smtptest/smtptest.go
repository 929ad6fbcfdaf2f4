// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on
// 127.0.0.1 inside a test process. It records every accepted message and can
// be stopped (connections refused) and started again on the same address,
// made to answer RCPT or DATA with an error, or to accept slowly.
package smtptest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/mail"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted.
type Message struct {
	From string   // MAIL FROM
	To   []string // RCPT TO
	Data []byte   // the message as received (CRLF line endings)
	// Header is the parsed header; Body the rest (nil when unparseable).
	Header mail.Header
	Body   []byte
	// Auth is the user name the session authenticated as, if any.
	Auth string
}

// MessageID is the message's Message-ID header.
func (m Message) MessageID() string { return m.Header.Get("Message-Id") }

// Server is an SMTP server for tests.
type Server struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	srv      *smtp.Server
	ln       net.Listener
	done     chan struct{}
	msgs     []Message
	notify   chan struct{}
	rcptErr  error
	dataErr  error
	delay    time.Duration
	user     string
	pass     string
	tlsConf  *tls.Config
	sessions int
}

// Option configures a Server.
type Option func(*Server)

// WithAuth requires AUTH PLAIN with user and pass before MAIL.
func WithAuth(user, pass string) Option {
	return func(s *Server) { s.user, s.pass = user, pass }
}

// WithTLS offers STARTTLS with conf.
func WithTLS(conf *tls.Config) Option {
	return func(s *Server) { s.tlsConf = conf }
}

// New starts a server on a free port of 127.0.0.1; it stops on t.Cleanup.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t, notify: make(chan struct{}, 1)}
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

func (s *Server) serve(ln net.Listener) {
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		return &session{s: s}, nil
	}))
	srv.Domain = "smtptest.local"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.MaxMessageBytes = 10 << 20
	srv.TLSConfig = s.tlsConf
	srv.ErrorLog = quietLog{}
	done := make(chan struct{})
	s.mu.Lock()
	s.srv, s.ln, s.done = srv, ln, done
	s.mu.Unlock()
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
}

// Stop closes the listener and every open session: until Start, connections
// to Addr are refused. It is a no-op on a stopped server.
func (s *Server) Stop() {
	s.mu.Lock()
	srv, ln, done := s.srv, s.ln, s.done
	s.srv, s.ln = nil, nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	_ = srv.Close()
	// Serve may not have registered the listener yet when Close ran.
	_ = ln.Close()
	<-done
}

// Start listens again on the same address after Stop. It retries for a few
// seconds if the port is briefly busy.
func (s *Server) Start() {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.serve(ln)
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			s.t.Fatalf("smtptest: listen again on %s: %v", s.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// RejectRcpt makes RCPT answer err (e.g. Reply(550, "no such user")); nil
// restores acceptance.
func (s *Server) RejectRcpt(err error) {
	s.mu.Lock()
	s.rcptErr = err
	s.mu.Unlock()
}

// RejectData makes the end of DATA answer err; nil restores acceptance.
func (s *Server) RejectData(err error) {
	s.mu.Lock()
	s.dataErr = err
	s.mu.Unlock()
}

// SetDelay makes the server wait d before accepting each message.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Reply returns an SMTP error reply with code and message, for RejectRcpt
// and RejectData.
func Reply(code int, msg string) error {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCodeNotSet, Message: msg}
}

// Messages returns a copy of the accepted messages, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Sessions is the number of SMTP sessions opened so far.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// WaitFor waits until at least n messages were accepted and returns them;
// after timeout it fails the test.
func (s *Server) WaitFor(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if msgs := s.Messages(); len(msgs) >= n {
			return msgs
		}
		select {
		case <-s.notify:
		case <-deadline.C:
			t.Fatalf("smtptest: %d messages after %v, want %d", len(s.Messages()), timeout, n)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type session struct {
	s    *Server
	from string
	to   []string
	auth string
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string {
	if ss.s.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.user || pass != ss.s.pass {
			return smtp.ErrAuthFailed
		}
		ss.auth = user
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.user != "" && ss.auth == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	err := ss.s.rcptErr
	ss.s.mu.Unlock()
	if err != nil {
		return err
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	err, delay := ss.s.dataErr, ss.s.delay
	ss.s.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay)
	}
	if err != nil {
		return err
	}
	m := Message{From: ss.from, To: append([]string(nil), ss.to...), Data: data, Auth: ss.auth}
	if pm, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		m.Header = pm.Header
		m.Body, _ = io.ReadAll(pm.Body)
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, m)
	ss.s.mu.Unlock()
	select {
	case ss.s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// quietLog drops the server's connection error lines (a client that hangs
// up is normal in these tests).
type quietLog struct{}

func (quietLog) Printf(string, ...interface{}) {}
func (quietLog) Println(...interface{})        {}
