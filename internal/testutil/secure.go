package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/narrated/llmworker/internal/natsconn"
)

// The credential kinds a SecureNATS server can require.
const (
	AuthPassword = "password"
	AuthToken    = "token"
	AuthNKey     = "nkey"
	AuthCreds    = "creds"
	AuthMTLS     = "mtls"
)

// AuthKinds are all of them.
var AuthKinds = []string{AuthPassword, AuthToken, AuthNKey, AuthCreds, AuthMTLS}

// SecureNATS is a real server with JetStream that requires one kind of
// credential.
type SecureNATS struct {
	Server *server.Server
	// Good connects; Secret is what in it must never be printed (a
	// password, a token, a seed or a JWT).
	Good   natsconn.Config
	Secret string
	// Bad are settings the server refuses, by what is wrong with them.
	Bad map[string]natsconn.Config
}

// StartSecureNATS runs a server that requires kind, until the test ends.
func StartSecureNATS(t testing.TB, kind string) *SecureNATS {
	t.Helper()
	dir := t.TempDir()
	s := &SecureNATS{Bad: map[string]natsconn.Config{}}
	var conf string
	scheme := "nats"
	switch kind {
	case AuthPassword:
		s.Secret = "pa55-w0rd-s3cret"
		conf = `authorization { users = [ {user: worker, password: "` + s.Secret + `"} ] }`
		s.Good.URL = "nats://worker:" + s.Secret + "@%s"
		s.Bad["wrong password"] = natsconn.Config{URL: "nats://worker:not-the-password@%s"}
		s.Bad["no credentials"] = natsconn.Config{URL: "nats://%s"}
	case AuthToken:
		s.Secret = "t0ken-s3cret-value"
		conf = `authorization { token: "` + s.Secret + `" }`
		s.Good.URL = "nats://" + s.Secret + "@%s"
		s.Bad["wrong token"] = natsconn.Config{URL: "nats://not-the-token@%s"}
	case AuthNKey:
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		s.Secret = string(seed)
		conf = `authorization { users = [ {nkey: ` + pub + `} ] }`
		s.Good.NKey = writeFile(t, dir, "user.nk", seed)
		other, _ := nkeys.CreateUser()
		otherSeed, _ := other.Seed()
		s.Bad["unknown nkey"] = natsconn.Config{NKey: writeFile(t, dir, "other.nk", otherSeed)}
	case AuthCreds:
		var good, expired, foreign []byte
		conf, good, expired, foreign = operatorMode(t, dir)
		s.Secret = string(good)
		s.Good.Creds = writeFile(t, dir, "user.creds", good)
		s.Bad["expired creds"] = natsconn.Config{Creds: writeFile(t, dir, "expired.creds", expired)}
		s.Bad["creds of another operator"] = natsconn.Config{Creds: writeFile(t, dir, "foreign.creds", foreign)}
		s.Bad["malformed creds"] = natsconn.Config{Creds: writeFile(t, dir, "bad.creds", []byte("-----BEGIN NATS USER JWT-----\nnot-a-jwt\n------END NATS USER JWT------\n"))}
	case AuthMTLS:
		pki := NewPKI(t, dir)
		scheme = "tls"
		s.Secret = string(pki.ClientKeyPEM)
		conf = fmt.Sprintf(`tls { cert_file: %q, key_file: %q, ca_file: %q, verify: true }`, pki.ServerCert, pki.ServerKey, pki.CA)
		s.Good = natsconn.Config{URL: "tls://%s", TLSCA: pki.CA, TLSCert: pki.ClientCert, TLSKey: pki.ClientKey}
		s.Bad["untrusted server certificate"] = natsconn.Config{URL: "tls://%s", TLSCert: pki.ClientCert, TLSKey: pki.ClientKey}
		s.Bad["no client certificate"] = natsconn.Config{URL: "tls://%s", TLSCA: pki.CA}
		s.Bad["client certificate of another CA"] = natsconn.Config{URL: "tls://%s", TLSCA: pki.CA, TLSCert: pki.OtherClientCert, TLSKey: pki.OtherClientKey}
	default:
		t.Fatalf("unknown credential kind %q", kind)
	}
	s.Server = StartNATSConfig(t, "listen: 127.0.0.1:-1\n"+conf+"\n")
	addr := s.Server.Addr().String()
	fill := func(c *natsconn.Config) {
		if c.URL == "" {
			c.URL = scheme + "://%s"
		}
		c.URL = fmt.Sprintf(c.URL, addr)
	}
	fill(&s.Good)
	for name, c := range s.Bad {
		fill(&c)
		s.Bad[name] = c
	}
	return s
}

// ConnectWith opens a NATS connection with c for the test, closed when it
// ends. Anything the server refuses it (a permissions violation) fails the
// test.
func ConnectWith(t testing.TB, c natsconn.Config) *nats.Conn {
	t.Helper()
	var mu sync.Mutex
	var refused []error
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, err := range refused {
			t.Errorf("%s: NATS refused: %v", natsconn.Redact(c.URL), err)
		}
	})
	nc, err := c.Connect(t.Name(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			mu.Lock()
			refused = append(refused, err)
			mu.Unlock()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// StartNATSConfig runs a server from configuration text, with JetStream
// stored in a temporary directory, until the test ends.
func StartNATSConfig(t testing.TB, conf string) *server.Server {
	t.Helper()
	path := writeFile(t, t.TempDir(), "nats-server.conf", []byte(conf))
	return StartNATSFile(t, path, func(*server.Options) {})
}

// StartNATSFile runs a server from a configuration file, after adjust has
// changed its options, with JetStream on and stored in a temporary
// directory, until the test ends.
func StartNATSFile(t testing.TB, path string, adjust func(*server.Options)) *server.Server {
	t.Helper()
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	adjust(opts)
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready within 10s")
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// operatorMode is the configuration of a server in decentralized auth
// (an operator, a system account and an account with JetStream, all in a
// memory resolver), a creds file it takes, one that has expired, and one
// signed by another operator.
func operatorMode(t testing.TB, dir string) (conf string, good, expired, foreign []byte) {
	t.Helper()
	operator, _ := nkeys.CreateOperator()
	opPub, _ := operator.PublicKey()
	opJWT, err := jwt.NewOperatorClaims(opPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, _ := nkeys.CreateAccount()
		pub, _ := kp.PublicKey()
		claims := jwt.NewAccountClaims(pub)
		claims.Name = name
		if js {
			claims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := claims.Encode(operator)
		if err != nil {
			t.Fatal(err)
		}
		return kp, pub, token
	}
	_, sysPub, sysJWT := account("SYS", false)
	acc, accPub, accJWT := account("APP", true)
	good = userCreds(t, acc, 0)
	expired = userCreds(t, acc, time.Now().Add(-time.Hour).Unix())
	otherAcc, _ := nkeys.CreateAccount() // known to no operator of the server
	foreign = userCreds(t, otherAcc, 0)
	conf = fmt.Sprintf("operator: %s\nsystem_account: %s\nresolver: MEMORY\nresolver_preload: {\n  %s: %s\n  %s: %s\n}\n",
		opJWT, sysPub, sysPub, sysJWT, accPub, accJWT)
	return conf, good, expired, foreign
}

// userCreds is a creds file of a new user of account, expiring at expires
// (unix seconds; 0: never).
func userCreds(t testing.TB, account nkeys.KeyPair, expires int64) []byte {
	t.Helper()
	user, _ := nkeys.CreateUser()
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	claims := jwt.NewUserClaims(pub)
	claims.Name = "worker"
	claims.Expires = expires
	token, err := claims.Encode(account)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		t.Fatal(err)
	}
	return creds
}

// PKI is a CA with a server certificate for 127.0.0.1 and localhost and a
// client certificate, and a client certificate of another CA, as PEM files.
type PKI struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string
	OtherClientCert, OtherClientKey                  string
	ClientKeyPEM                                     []byte
}

// NewPKI writes a PKI's files into dir.
func NewPKI(t testing.TB, dir string) PKI {
	t.Helper()
	ca, caKey := newCert(t, "test CA", nil, nil)
	other, otherKey := newCert(t, "other CA", nil, nil)
	server, serverKey := newCert(t, "nats server", ca, caKey)
	client, clientKey := newCert(t, "llmworker client", ca, caKey)
	otherClient, otherClientKey := newCert(t, "intruder", other, otherKey)
	p := PKI{
		CA:              writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw),
		ServerCert:      writePEM(t, dir, "server.pem", "CERTIFICATE", server.Raw),
		ServerKey:       writePEM(t, dir, "server-key.pem", "EC PRIVATE KEY", marshalKey(t, serverKey)),
		ClientCert:      writePEM(t, dir, "client.pem", "CERTIFICATE", client.Raw),
		ClientKey:       writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", marshalKey(t, clientKey)),
		OtherClientCert: writePEM(t, dir, "other-client.pem", "CERTIFICATE", otherClient.Raw),
		OtherClientKey:  writePEM(t, dir, "other-client-key.pem", "EC PRIVATE KEY", marshalKey(t, otherClientKey)),
	}
	p.ClientKeyPEM, _ = os.ReadFile(p.ClientKey)
	return p
}

// newCert makes a certificate signed by parent, or a self-signed CA when
// parent is nil.
func newCert(t testing.TB, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage, tmpl.IPAddresses, tmpl.DNSNames = nil, nil, nil
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func marshalKey(t testing.TB, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t testing.TB, dir, name, kind string, der []byte) string {
	return writeFile(t, dir, name, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}))
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Secrets are the parts of s.Secret worth grepping for: the whole of it
// and, for a creds file, its JWT and its seed separately.
func (s *SecureNATS) Secrets() []string {
	out := []string{s.Secret}
	for _, line := range strings.Split(s.Secret, "\n") {
		if line = strings.TrimSpace(line); len(line) > 20 && !strings.HasPrefix(line, "-") && !strings.Contains(line, " ") {
			out = append(out, line)
		}
	}
	return out
}

// NATSArgs are the command-line flags that give a binary c.
func NATSArgs(c natsconn.Config) []string {
	args := []string{"-nats", c.URL}
	for flag, v := range map[string]string{"-nats-creds": c.Creds, "-nats-nkey": c.NKey,
		"-nats-tls-ca": c.TLSCA, "-nats-tls-cert": c.TLSCert, "-nats-tls-key": c.TLSKey} {
		if v != "" {
			args = append(args, flag, v)
		}
	}
	return args
}
