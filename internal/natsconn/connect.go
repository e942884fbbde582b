package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"github.com/nats-io/nats.go"
)

// Error is a failed connection: the redacted URL and what was wrong, in
// words that name the setting to fix and hold no secret.
type Error struct {
	// URL is the redacted URL.
	URL string
	// Reason says what was wrong.
	Reason string
	// Unreachable is set when no server answered, as opposed to a server
	// that refused the client's credentials or TLS.
	Unreachable bool
}

func (e *Error) Error() string { return "NATS at " + e.URL + ": " + e.Reason }

// Connect connects with the client's name and extra options, failing at
// once with an *Error when no server takes the connection.
func (c Config) Connect(name string, extra ...nats.Option) (*nats.Conn, error) {
	opts, err := c.Options()
	if err != nil {
		return nil, err
	}
	opts = append(append([]nats.Option{nats.Name(name)}, opts...), extra...)
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, &Error{URL: Redact(c.URL), Reason: scrub(c.explain(err), c.URL), Unreachable: unreachable(err)}
	}
	return nc, nil
}

// ConnectOrRetry is Connect, except that when no server is reachable yet it
// returns a connection that keeps trying in the background. Credentials or
// certificates that a server refuses still fail at once.
func (c Config) ConnectOrRetry(name string, extra ...nats.Option) (*nats.Conn, error) {
	nc, err := c.Connect(name, extra...)
	var ce *Error
	if errors.As(err, &ce) && ce.Unreachable {
		return c.Connect(name, append(extra, nats.RetryOnFailedConnect(true))...)
	}
	return nc, err
}

// unreachable reports whether err means that no server answered at all.
func unreachable(err error) bool {
	if errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) {
		return true
	}
	var op *net.OpError
	var dns *net.DNSError
	return !isTLS(err) && (errors.As(err, &dns) || errors.As(err, &op) && op.Op == "dial")
}

func isTLS(err error) bool {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var alert tls.AlertError
	return errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) ||
		errors.As(err, &verify) || errors.As(err, &alert) || strings.Contains(err.Error(), "tls:")
}

// explain says in words what a connection error means for this client's
// settings.
func (c Config) explain(err error) string {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return "authorization violation: the server refused " + c.credentials()
	case errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAccountAuthExpired):
		return "the server says " + c.credentials() + " expired"
	case errors.Is(err, nats.ErrAuthRevoked):
		return "the server says " + c.credentials() + " are revoked"
	case errors.As(err, &unknown):
		return "the server's TLS certificate is not signed by a trusted CA (give its CA with -nats-tls-ca)"
	case errors.As(err, &host):
		return "the server's TLS certificate is not valid for this host name: " + host.Error()
	case errors.As(err, &invalid):
		return "the server's TLS certificate is not valid: " + invalid.Error()
	case strings.Contains(err.Error(), "remote error: tls:") && c.TLSCert == "":
		return "the server requires a TLS client certificate: give -nats-tls-cert and -nats-tls-key (" + err.Error() + ")"
	case strings.Contains(err.Error(), "remote error: tls:"):
		return "the server refused the client certificate of -nats-tls-cert " + c.TLSCert + ", is it signed by a CA the server trusts? (" + err.Error() + ")"
	case errors.Is(err, nats.ErrSecureConnRequired):
		return "the server requires TLS: use a tls:// URL or -nats-tls-ca"
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "TLS was asked for, but the server does not offer it"
	case errors.Is(err, nats.ErrNoServers):
		return "no server is reachable (connection refused)"
	}
	return err.Error()
}

// credentials names what the client presented, for an error message.
func (c Config) credentials() string {
	switch {
	case c.Creds != "":
		return "the credentials of -nats-creds " + c.Creds
	case c.NKey != "":
		return "the nkey of -nats-nkey " + c.NKey
	case c.TLSCert != "" && !hasUserInfo(c.URL):
		return "the client certificate of -nats-tls-cert " + c.TLSCert
	}
	for _, u := range strings.Split(c.URL, ",") {
		if user, pass, ok := userInfo(u); ok {
			if pass != "" {
				return "the password of user " + user
			}
			return "the token in the URL"
		}
	}
	return "an anonymous client (give a password or token in -nats, or -nats-creds, -nats-nkey, -nats-tls-cert)"
}

// scrub replaces any secret of url that a message might echo (nats.go's
// errors quote URLs it cannot parse).
func scrub(msg, url string) string {
	for _, u := range strings.Split(url, ",") {
		user, pass, ok := userInfo(u)
		if !ok {
			continue
		}
		secret := pass
		if secret == "" {
			secret = user // a token
		}
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, Mask)
		}
	}
	return msg
}

// Describe is a one-line account of an open connection, for logs: the
// redacted server URL.
func Describe(nc *nats.Conn) string { return Redact(nc.ConnectedUrl()) }

func hasUserInfo(url string) bool {
	for _, u := range strings.Split(url, ",") {
		if _, _, ok := userInfo(u); ok {
			return true
		}
	}
	return false
}
