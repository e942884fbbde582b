// Package natsconn connects the project's NATS clients (the worker, the
// bridge, submit) to a NATS server as a real deployment runs it: with a
// password or token in the URL, a creds file, an nkey seed, or a TLS client
// certificate, to one server or a cluster. It owns their connection flags
// (with environment fallbacks), checks the credential files before any
// connection, connects with one clear error that names what was wrong and
// never a secret, and redacts every URL it gives out for printing.
//
// It knows nothing of jobs, workers or HTTP.
package natsconn

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// DefaultURL is the server the bridge and submit use when given none: the
// worker's embedded server.
const DefaultURL = "nats://127.0.0.1:4222"

// Config says where a client connects and how it proves who it is.
type Config struct {
	// URL is a server URL, or several separated by commas (a cluster). It
	// may carry user:password or a token (nats://user:pass@host,
	// nats://token@host); a tls:// URL asks for TLS.
	URL string
	// Creds is a decentralized-auth .creds file: a user JWT and its nkey
	// seed.
	Creds string
	// NKey is a file holding a user nkey seed.
	NKey string
	// TLSCA is a PEM file of the CAs that sign the server's certificate.
	TLSCA string
	// TLSCert and TLSKey are the client's PEM certificate and key, for
	// servers that verify clients (mutual TLS).
	TLSCert, TLSKey string
}

// Env names the environment variable behind each flag of Define.
var Env = map[string]string{
	"nats":          "NATS_URL",
	"nats-creds":    "NATS_CREDS",
	"nats-nkey":     "NATS_NKEY",
	"nats-tls-ca":   "NATS_TLS_CA",
	"nats-tls-cert": "NATS_TLS_CERT",
	"nats-tls-key":  "NATS_TLS_KEY",
}

// WithEnv returns env with this package's flag variables added, for
// flagenv.Parse.
func WithEnv(env map[string]string) map[string]string {
	out := make(map[string]string, len(env)+len(Env))
	for k, v := range Env {
		out[k] = v
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// Define defines -nats (with defaultURL and urlUsage) and the credential
// and TLS flags on fs, storing into c.
func (c *Config) Define(fs *flag.FlagSet, defaultURL, urlUsage string) {
	fs.StringVar(&c.URL, "nats", defaultURL, urlUsage)
	fs.StringVar(&c.Creds, "nats-creds", "", "NATS credentials file (user JWT and nkey seed)")
	fs.StringVar(&c.NKey, "nats-nkey", "", "file holding a NATS user nkey seed")
	fs.StringVar(&c.TLSCA, "nats-tls-ca", "", "PEM file of the CAs that sign the NATS server's certificate")
	fs.StringVar(&c.TLSCert, "nats-tls-cert", "", "PEM client certificate for NATS (mutual TLS; with -nats-tls-key)")
	fs.StringVar(&c.TLSKey, "nats-tls-key", "", "PEM key of -nats-tls-cert")
}

// HasCredentials reports whether any credential or TLS setting is given
// besides the URL.
func (c Config) HasCredentials() bool {
	return c.Creds != "" || c.NKey != "" || c.TLSCA != "" || c.TLSCert != "" || c.TLSKey != ""
}

// Options checks the credential and TLS files and returns the nats options
// that present them. Its errors name the flag and the file, never what the
// file holds.
func (c Config) Options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.Creds != "" && c.NKey != "":
		return nil, errors.New("-nats-creds and -nats-nkey: give one of them, not both")
	case c.Creds != "":
		if err := checkCreds(c.Creds, time.Now()); err != nil {
			return nil, fmt.Errorf("-nats-creds %s: %w", c.Creds, err)
		}
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		opt, err := nkeyOption(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("-nats-nkey %s: %w", c.NKey, err)
		}
		opts = append(opts, opt)
	}
	cfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// checkCreds reads a creds file as the client will, and tells what is
// wrong with it: unreadable, no user JWT, no user seed, or expired.
func checkCreds(path string, now time.Time) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return readError(err)
	}
	token, err := nkeys.ParseDecoratedJWT(data)
	if err != nil {
		return errors.New("not a creds file: no user JWT in it")
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return errors.New("not a creds file: its JWT is not a valid user JWT")
	}
	kp, err := nkeys.ParseDecoratedUserNKey(data)
	if err != nil {
		return errors.New("not a creds file: no user nkey seed in it")
	}
	kp.Wipe()
	if claims.Expires > 0 && now.Unix() >= claims.Expires {
		return fmt.Errorf("the user JWT expired at %s", time.Unix(claims.Expires, 0).UTC().Format(time.RFC3339))
	}
	return nil
}

// nkeyOption reads a user seed file and returns the option that signs the
// server's nonce with it.
func nkeyOption(path string) (nats.Option, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(err)
	}
	kp, err := nkeys.ParseDecoratedUserNKey(data)
	if err != nil {
		return nil, errors.New("no user nkey seed (SU...) in it")
	}
	kp.Wipe()
	return nats.NkeyOptionFromSeed(path)
}

// tlsConfig builds the client TLS configuration, or nil when no TLS file
// is given (a tls:// URL then verifies against the system's CAs).
func (c Config) tlsConfig() (*tls.Config, error) {
	if c.TLSCA == "" && c.TLSCert == "" && c.TLSKey == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCA != "" {
		data, err := os.ReadFile(c.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("-nats-tls-ca %s: %w", c.TLSCA, readError(err))
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("-nats-tls-ca %s: no PEM certificate in it", c.TLSCA)
		}
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		return nil, errors.New("-nats-tls-cert needs -nats-tls-key")
	case c.TLSKey != "" && c.TLSCert == "":
		return nil, errors.New("-nats-tls-key needs -nats-tls-cert")
	case c.TLSCert != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("-nats-tls-cert %s, -nats-tls-key %s: %w", c.TLSCert, c.TLSKey, keyPairError(err))
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// readError is a file's read error without the path, which the caller
// names.
func readError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// keyPairError says why a certificate and key do not load, without
// quoting either.
func keyPairError(err error) error {
	var pe *os.PathError
	switch msg := err.Error(); {
	case errors.As(err, &pe):
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	case strings.Contains(msg, "private key does not match"):
		return errors.New("the key does not match the certificate")
	case strings.Contains(msg, "key input"):
		return errors.New("no PEM private key in the key file")
	case strings.Contains(msg, "certificate input"):
		return errors.New("no PEM certificate in the certificate file")
	default:
		return errors.New("the certificate or its key cannot be loaded")
	}
}
