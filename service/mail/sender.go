package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"time"

	"github.com/shoplab/shoplab/service/shop"
)

// TLS modes of Config.TLS.
const (
	TLSAuto     = "auto"     // STARTTLS when the server offers it (the default)
	TLSStartTLS = "starttls" // STARTTLS required: fail when it is not offered
	TLSImplicit = "tls"      // TLS from the first byte (port 465)
	TLSNone     = "none"     // never TLS
)

// Config is the SMTP sender's configuration.
type Config struct {
	// Addr is the SMTP server, host:port (SMTP_ADDR).
	Addr string
	// Username and Password authenticate with AUTH PLAIN when Username is
	// set (SMTP_USERNAME, SMTP_PASSWORD). Credentials are only sent over TLS,
	// or in clear to a loopback server (a local mail catcher).
	Username, Password string
	// From is the sender, e.g. `shoplab <orders@shoplab.local>` (MAIL_FROM).
	// Its domain is the domain of the Message-IDs.
	From string
	// TLS is one of the TLS* modes (SMTP_TLS); empty means DefaultConfig's.
	TLS string
	// Timeout bounds one send: connect, session and the message (SMTP_TIMEOUT).
	Timeout time.Duration
	// TLSConfig, when set, is used for TLS (tests set RootCAs); otherwise the
	// system roots verify the server named by Addr.
	TLSConfig *tls.Config
}

// DefaultConfig is the configuration shoplab starts from: no server (Addr
// empty: nothing is sent), the shop's sender address, TLSAuto and a 30 s
// send timeout. NewSender takes TLS and Timeout from it when they are zero.
func DefaultConfig() Config {
	return Config{
		From:    "shoplab <orders@shoplab.local>",
		TLS:     TLSAuto,
		Timeout: 30 * time.Second,
	}
}

// Sender sends order confirmations over SMTP (net/smtp), one connection per
// mail. It is safe for concurrent use. It implements shop.Mailer.
type Sender struct {
	cfg   Config
	from  *mail.Address
	host  string
	hello string
}

var _ shop.Mailer = (*Sender)(nil)

// NewSender checks cfg and returns a Sender. Errors: EINVALID when Addr is
// not host:port, From is not an address or TLS is not a known mode.
func NewSender(cfg Config) (*Sender, error) {
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, shop.Errorf(shop.EINVALID, "SMTP_ADDR=%q must be host:port", cfg.Addr)
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, shop.Errorf(shop.EINVALID, "MAIL_FROM=%q is not a mail address", cfg.From)
	}
	def := DefaultConfig()
	switch cfg.TLS {
	case "":
		cfg.TLS = def.TLS
	case TLSAuto, TLSStartTLS, TLSImplicit, TLSNone:
	default:
		return nil, shop.Errorf(shop.EINVALID, "SMTP_TLS=%q must be auto, starttls, tls or none", cfg.TLS)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	hello, err := os.Hostname()
	if err != nil || hello == "" {
		hello = "localhost"
	}
	return &Sender{cfg: cfg, from: from, host: host, hello: hello}, nil
}

// From is the sender's address.
func (s *Sender) From() *mail.Address { return s.from }

// SendOrderConfirmation composes c's confirmation and delivers it to c.To
// in one SMTP session, within Config.Timeout and ctx. Errors (see
// shop.Mailer): EINVALID (bad recipient or template), EUNPROCESSABLE (the
// server rejected the recipient or the message with a 5xx reply),
// EUNAVAILABLE (anything else: unreachable, TLS, authentication, the
// sender refused, 4xx replies, a broken connection, ctx done).
func (s *Sender) SendOrderConfirmation(ctx context.Context, c shop.OrderConfirmation) error {
	msg, err := Compose(s.from, c, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return s.send(ctx, c.To, msg)
}

// send runs one SMTP session delivering msg to rcpt.
func (s *Sender) send(ctx context.Context, rcpt string, msg []byte) error {
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return unavailable("connect", err)
	}
	tlsConf := s.tlsConfig()
	if s.cfg.TLS == TLSImplicit {
		conn = tls.Client(conn, tlsConf)
	}
	// Closing the connection is what makes ctx (cancel and timeout)
	// interrupt a session wherever it waits.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, s.host) // reads the greeting
	if err != nil {
		_ = conn.Close()
		return unavailable("greeting", err)
	}
	defer c.Close()

	if err := c.Hello(s.hello); err != nil {
		return unavailable("hello", err)
	}
	if s.cfg.TLS == TLSAuto || s.cfg.TLS == TLSStartTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsConf); err != nil {
				return unavailable("starttls", err)
			}
		} else if s.cfg.TLS == TLSStartTLS {
			return unavailable("starttls", errors.New("the server does not offer STARTTLS"))
		}
	}
	if s.cfg.Username != "" {
		// PlainAuth refuses to send credentials in clear except to a
		// loopback server.
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, s.host)); err != nil {
			return unavailable("auth", err)
		}
	}
	if err := c.Mail(s.from.Address); err != nil {
		return unavailable("mail from", err)
	}
	if err := c.Rcpt(rcpt); err != nil {
		return classify("rcpt to", err)
	}
	w, err := c.Data()
	if err != nil {
		return classify("data", err)
	}
	if _, err := w.Write(msg); err != nil {
		_ = w.Close()
		return unavailable("data", err)
	}
	if err := w.Close(); err != nil {
		return classify("data", err)
	}
	// The message is accepted; a failing QUIT changes nothing.
	_ = c.Quit()
	return nil
}

func (s *Sender) tlsConfig() *tls.Config {
	if s.cfg.TLSConfig != nil {
		conf := s.cfg.TLSConfig.Clone()
		if conf.ServerName == "" {
			conf.ServerName = s.host
		}
		return conf
	}
	return &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}
}

// unavailable reports a failure that retrying later may cure.
func unavailable(stage string, err error) *shop.Error {
	return &shop.Error{Code: shop.EUNAVAILABLE, Message: "The mail server is unavailable.", Err: fmt.Errorf("smtp %s: %w", stage, err)}
}

// classify maps a reply to RCPT or DATA: a 5xx is a permanent rejection of
// this message (EUNPROCESSABLE); anything else is worth retrying.
func classify(stage string, err error) *shop.Error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 && te.Code < 600 {
		return &shop.Error{Code: shop.EUNPROCESSABLE, Message: "The mail server rejected the message.", Err: fmt.Errorf("smtp %s: %w", stage, err)}
	}
	return unavailable(stage, err)
}
