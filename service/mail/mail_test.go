package mail_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	netmail "net/mail"
	"strings"
	"testing"
	"time"

	"github.com/shoplab/shoplab/service/internal/smtptest"
	"github.com/shoplab/shoplab/service/mail"
	"github.com/shoplab/shoplab/service/shop"
)

func confirmation() shop.OrderConfirmation {
	return shop.OrderConfirmation{
		OrderID:  "0b6f2a3e-93c1-4d7e-9a55-1f2e3d4c5b6a",
		To:       "ann@example.com",
		Name:     "Ann Buyer",
		PlacedAt: time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC),
		Lines: []shop.ConfirmationLine{
			{ProductID: "p1", Name: "Desk Fan", Quantity: 2, UnitPrice: 2450},
			{ProductID: "p2", Name: `Cable <script>alert("x")</script> & Co`, Quantity: 1, UnitPrice: 999},
		},
		Total: 5899,
	}
}

// Parts splits a message into its text/plain and text/html bodies, decoded.
func Parts(t *testing.T, raw []byte) (netmail.Header, string, string) {
	t.Helper()
	m, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var text, html string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		// multipart.Reader decodes quoted-printable itself (and hides the
		// Content-Transfer-Encoding header).
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		switch ct := p.Header.Get("Content-Type"); {
		case strings.HasPrefix(ct, "text/plain"):
			text = string(b)
		case strings.HasPrefix(ct, "text/html"):
			html = string(b)
		default:
			t.Errorf("unexpected part %q", ct)
		}
	}
	return m.Header, text, html
}

func TestCompose(t *testing.T) {
	t.Parallel()
	from, _ := netmail.ParseAddress("shoplab <orders@shop.example>")
	c := confirmation()
	raw, err := mail.Compose(from, c, time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte("\r\n\r\n")) || bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("lines are not all CRLF-terminated")
	}
	if n := bytes.Count(raw, []byte("Content-Transfer-Encoding: quoted-printable\r\n")); n != 2 {
		t.Errorf("%d quoted-printable parts, want 2", n)
	}
	h, text, html := Parts(t, raw)

	t.Run("Headers", func(t *testing.T) {
		for k, want := range map[string]string{
			"From":               `"shoplab" <orders@shop.example>`,
			"To":                 `"Ann Buyer" <ann@example.com>`,
			"Message-Id":         "<order-confirmation." + c.OrderID + "@shop.example>",
			"X-Shoplab-Order-Id": c.OrderID,
			"Mime-Version":       "1.0",
			"Date":               "Thu, 26 Nov 2026 10:00:00 +0000",
		} {
			if got := h.Get(k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		subject, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
		if err != nil || subject != "Your shoplab order "+c.OrderID {
			t.Errorf("Subject = %q (%v)", subject, err)
		}
	})
	t.Run("PlainText", func(t *testing.T) {
		for _, want := range []string{
			"Hello Ann Buyer,",
			"Order:  " + c.OrderID,
			"Placed: 2026-11-26 09:30 UTC",
			"2 x Desk Fan at 24.50 = 49.00",
			`1 x Cable <script>alert("x")</script> & Co at 9.99 = 9.99`,
			"Total: 58.99",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("text part lacks %q:\n%s", want, text)
			}
		}
	})
	t.Run("HTMLEscaped", func(t *testing.T) {
		for _, want := range []string{
			"<strong>" + c.OrderID + "</strong>",
			"<td>Desk Fan</td><td align=\"right\">2</td><td align=\"right\">24.50</td><td align=\"right\">49.00</td>",
			"Cable &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co",
			"<th align=\"right\">58.99</th>",
		} {
			if !strings.Contains(html, want) {
				t.Errorf("html part lacks %q:\n%s", want, html)
			}
		}
		if strings.Contains(html, "<script>") {
			t.Error("html part carries an unescaped product name")
		}
	})
	t.Run("ErrInvalidRecipient", func(t *testing.T) {
		c := confirmation()
		c.To = "not an address"
		if _, err := mail.Compose(from, c, time.Now()); shop.ErrorCode(err) != shop.EINVALID {
			t.Errorf("got %v, want EINVALID", err)
		}
	})
	t.Run("LongLinesWrapped", func(t *testing.T) {
		c := confirmation()
		c.Lines[0].Name = strings.Repeat("é", 300)
		raw, err := mail.Compose(from, c, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(raw), "\r\n") {
			if len(l) > 998 {
				t.Fatalf("line of %d octets (RFC 5322 allows 998)", len(l))
			}
		}
		_, text, _ := Parts(t, raw)
		if !strings.Contains(text, c.Lines[0].Name) {
			t.Error("the long name did not survive quoted-printable")
		}
	})
}

func newSender(t *testing.T, cfg mail.Config) *mail.Sender {
	t.Helper()
	if cfg.From == "" {
		cfg.From = "shoplab <orders@shop.example>"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	s, err := mail.NewSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSend(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("OK", func(t *testing.T) {
		t.Parallel()
		srv := smtptest.New(t)
		s := newSender(t, mail.Config{Addr: srv.Addr()})
		c := confirmation()
		if err := s.SendOrderConfirmation(ctx, c); err != nil {
			t.Fatal(err)
		}
		msgs := srv.Messages()
		if len(msgs) != 1 {
			t.Fatalf("%d messages", len(msgs))
		}
		m := msgs[0]
		if m.From != "orders@shop.example" || len(m.To) != 1 || m.To[0] != "ann@example.com" {
			t.Errorf("envelope %q -> %q", m.From, m.To)
		}
		if m.MessageID() != mail.MessageID(c.OrderID, "shop.example") {
			t.Errorf("Message-ID %q", m.MessageID())
		}
		_, text, _ := Parts(t, m.Data)
		if !strings.Contains(text, "Total: 58.99") {
			t.Errorf("text part: %s", text)
		}
	})
	t.Run("Auth", func(t *testing.T) {
		t.Parallel()
		srv := smtptest.New(t, smtptest.WithAuth("relay", "s3cret"))
		if err := newSender(t, mail.Config{Addr: srv.Addr(), Username: "relay", Password: "s3cret"}).SendOrderConfirmation(ctx, confirmation()); err != nil {
			t.Fatal(err)
		}
		if m := srv.Messages(); len(m) != 1 || m[0].Auth != "relay" {
			t.Fatalf("messages %+v", m)
		}
		err := newSender(t, mail.Config{Addr: srv.Addr(), Username: "relay", Password: "wrong"}).SendOrderConfirmation(ctx, confirmation())
		if shop.ErrorCode(err) != shop.EUNAVAILABLE {
			t.Errorf("wrong password: %v, want EUNAVAILABLE (a configuration problem, not the message's)", err)
		}
	})
	t.Run("StartTLS", func(t *testing.T) {
		t.Parallel()
		serverConf, roots := selfSigned(t)
		srv := smtptest.New(t, smtptest.WithTLS(serverConf), smtptest.WithAuth("relay", "s3cret"))
		s := newSender(t, mail.Config{Addr: srv.Addr(), Username: "relay", Password: "s3cret", TLS: mail.TLSStartTLS,
			TLSConfig: &tls.Config{RootCAs: roots}})
		if err := s.SendOrderConfirmation(ctx, confirmation()); err != nil {
			t.Fatal(err)
		}
		// Without the test CA the certificate is refused: nothing is sent.
		err := newSender(t, mail.Config{Addr: srv.Addr(), TLS: mail.TLSAuto}).SendOrderConfirmation(ctx, confirmation())
		if shop.ErrorCode(err) != shop.EUNAVAILABLE || len(srv.Messages()) != 1 {
			t.Errorf("untrusted certificate: %v, %d messages", err, len(srv.Messages()))
		}
		plain := smtptest.New(t)
		err = newSender(t, mail.Config{Addr: plain.Addr(), TLS: mail.TLSStartTLS}).SendOrderConfirmation(ctx, confirmation())
		if shop.ErrorCode(err) != shop.EUNAVAILABLE || len(plain.Messages()) != 0 {
			t.Errorf("STARTTLS required but not offered: %v", err)
		}
	})
	t.Run("ErrServerDown", func(t *testing.T) {
		t.Parallel()
		srv := smtptest.New(t)
		srv.Stop()
		err := newSender(t, mail.Config{Addr: srv.Addr()}).SendOrderConfirmation(ctx, confirmation())
		if shop.ErrorCode(err) != shop.EUNAVAILABLE {
			t.Errorf("got %v, want EUNAVAILABLE", err)
		}
	})
	t.Run("ErrRejectedPermanently", func(t *testing.T) {
		t.Parallel()
		srv := smtptest.New(t)
		srv.RejectRcpt(smtptest.Reply(550, "no such mailbox"))
		err := newSender(t, mail.Config{Addr: srv.Addr()}).SendOrderConfirmation(ctx, confirmation())
		if shop.ErrorCode(err) != shop.EUNPROCESSABLE {
			t.Errorf("RCPT 550: %v, want EUNPROCESSABLE", err)
		}
		srv.RejectRcpt(nil)
		srv.RejectData(smtptest.Reply(554, "looks like spam"))
		err = newSender(t, mail.Config{Addr: srv.Addr()}).SendOrderConfirmation(ctx, confirmation())
		if shop.ErrorCode(err) != shop.EUNPROCESSABLE {
			t.Errorf("DATA 554: %v, want EUNPROCESSABLE", err)
		}
	})
	t.Run("ErrRejectedTemporarily", func(t *testing.T) {
		t.Parallel()
		srv := smtptest.New(t)
		srv.RejectRcpt(smtptest.Reply(451, "try again later"))
		err := newSender(t, mail.Config{Addr: srv.Addr()}).SendOrderConfirmation(ctx, confirmation())
		if shop.ErrorCode(err) != shop.EUNAVAILABLE {
			t.Errorf("RCPT 451: %v, want EUNAVAILABLE", err)
		}
	})
	t.Run("ErrTimeout", func(t *testing.T) {
		t.Parallel()
		// A server that accepts connections and never greets.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				t.Cleanup(func() { c.Close() })
			}
		}()
		start := time.Now()
		err = newSender(t, mail.Config{Addr: ln.Addr().String(), Timeout: 300 * time.Millisecond}).SendOrderConfirmation(ctx, confirmation())
		if shop.ErrorCode(err) != shop.EUNAVAILABLE {
			t.Errorf("got %v, want EUNAVAILABLE", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("send took %v despite a 300ms timeout", d)
		}
	})
	t.Run("ErrConfig", func(t *testing.T) {
		t.Parallel()
		for _, cfg := range []mail.Config{
			{Addr: "no-port", From: "a@b.c"},
			{Addr: "h:25", From: "not an address"},
			{Addr: "h:25", From: "a@b.c", TLS: "sometimes"},
		} {
			if _, err := mail.NewSender(cfg); shop.ErrorCode(err) != shop.EINVALID {
				t.Errorf("%+v: %v, want EINVALID", cfg, err)
			}
		}
	})
}

// selfSigned returns a server TLS config for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, roots
}
