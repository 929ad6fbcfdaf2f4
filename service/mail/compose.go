// Package mail renders order-confirmation mails (plain text and HTML from
// templates, as one multipart/alternative message) and sends them over SMTP.
// It implements shop.Mailer; the outbox relay (package postgres) calls it.
package mail

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/shoplab/shoplab/service/shop"
)

//go:embed templates/*.tmpl
var templateFS embed.FS

// The templates are parsed once; they are constant, so a parse error is a
// bug caught by every test of the package.
var (
	textTmpl = texttemplate.Must(texttemplate.ParseFS(templateFS, "templates/order_confirmation.txt.tmpl"))
	htmlTmpl = htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/order_confirmation.html.tmpl"))
)

// view is what the templates see: every value already formatted.
type view struct {
	OrderID  string
	Name     string
	PlacedAt string
	Lines    []viewLine
	Total    string
}

type viewLine struct {
	Name      string
	Quantity  int
	UnitPrice string
	Amount    string
}

func newView(c shop.OrderConfirmation) view {
	v := view{OrderID: c.OrderID, Name: c.Name, Total: c.Total.String(), Lines: make([]viewLine, len(c.Lines))}
	if !c.PlacedAt.IsZero() {
		v.PlacedAt = c.PlacedAt.UTC().Format("2006-01-02 15:04 MST")
	}
	for i, l := range c.Lines {
		v.Lines[i] = viewLine{Name: l.Name, Quantity: l.Quantity, UnitPrice: l.UnitPrice.String(), Amount: l.Amount().String()}
	}
	return v
}

// Render returns the plain-text and HTML bodies of c's confirmation. The
// HTML template escapes every value (product names come from merchants).
// Errors: EINVALID when a template fails on c.
func Render(c shop.OrderConfirmation) (text, html string, err error) {
	v := newView(c)
	var tb, hb strings.Builder
	if err := textTmpl.Execute(&tb, v); err != nil {
		return "", "", &shop.Error{Code: shop.EINVALID, Message: "The confirmation cannot be rendered.", Err: err}
	}
	if err := htmlTmpl.Execute(&hb, v); err != nil {
		return "", "", &shop.Error{Code: shop.EINVALID, Message: "The confirmation cannot be rendered.", Err: err}
	}
	return tb.String(), hb.String(), nil
}

// Subject is the subject line of c's confirmation.
func Subject(c shop.OrderConfirmation) string {
	return "Your shoplab order " + c.OrderID
}

// MessageID is the Message-ID of the confirmation of orderID, the same on
// every attempt: a duplicate sent after a crash (delivery is at least once)
// carries the same id, so mail clients and support can recognise it.
func MessageID(orderID, domain string) string {
	return "<order-confirmation." + orderID + "@" + domain + ">"
}

// Compose renders c as an RFC 5322 message from from, dated date: headers,
// then a multipart/alternative body with a quoted-printable text/plain part
// and a text/html part, with CRLF line endings. Errors: EINVALID when c has
// no valid recipient or cannot be rendered.
func Compose(from *mail.Address, c shop.OrderConfirmation, date time.Time) ([]byte, error) {
	to, err := mail.ParseAddress(c.To)
	if err != nil {
		return nil, &shop.Error{Code: shop.EINVALID, Message: "The recipient address is invalid.", Err: err}
	}
	to.Name = c.Name
	text, html, err := Render(c)
	if err != nil {
		return nil, err
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range []struct{ ctype, content string }{
		{"text/plain; charset=utf-8", text},
		{"text/html; charset=utf-8", html},
	} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {p.ctype},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return nil, err
		}
		qp := quotedprintable.NewWriter(w)
		if _, err := qp.Write([]byte(p.content)); err != nil {
			return nil, err
		}
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}

	var msg bytes.Buffer
	header := func(k, v string) { fmt.Fprintf(&msg, "%s: %s\r\n", k, v) }
	header("From", from.String())
	header("To", to.String())
	header("Subject", mime.QEncoding.Encode("utf-8", Subject(c)))
	header("Date", date.Format(time.RFC1123Z))
	header("Message-ID", MessageID(c.OrderID, domainOf(from.Address)))
	header("X-Shoplab-Order-Id", c.OrderID)
	header("MIME-Version", "1.0")
	header("Content-Type", `multipart/alternative; boundary="`+mw.Boundary()+`"`)
	msg.WriteString("\r\n")
	msg.Write(body.Bytes())
	return msg.Bytes(), nil
}

// domainOf returns the domain of an address, or "shoplab.local".
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 && i+1 < len(addr) {
		return addr[i+1:]
	}
	return "shoplab.local"
}
