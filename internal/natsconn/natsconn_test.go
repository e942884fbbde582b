package natsconn_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/narrated/llmworker/internal/flagenv"
	"github.com/narrated/llmworker/internal/natsconn"
	"github.com/narrated/llmworker/internal/testutil"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://worker:s3cret@host:4222", "nats://worker:xxxxx@host:4222"},
		{"tls://t0ken@host:4222", "tls://xxxxx@host:4222"},
		{"worker:s3cret@host:4222", "worker:xxxxx@host:4222"},
		{"nats://a:p@ss@h1:4222,nats://a:p2@h2:4222,nats://h3:4222", "nats://a:xxxxx@h1:4222,nats://a:xxxxx@h2:4222,nats://h3:4222"},
		{"nats://u:%zz@host", "nats://u:xxxxx@host"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := natsconn.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFlagsTakeTheEnvironment(t *testing.T) {
	var c natsconn.Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.Define(fs, natsconn.DefaultURL, "url")
	env := map[string]string{"NATS_CREDS": "/c", "NATS_NKEY": "/n", "NATS_TLS_CA": "/ca", "NATS_TLS_CERT": "/cert", "NATS_TLS_KEY": "/key", "NATS_URL": "tls://h:1"}
	if err := flagenv.Parse(fs, nil, natsconn.Env, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	want := natsconn.Config{URL: "tls://h:1", Creds: "/c", NKey: "/n", TLSCA: "/ca", TLSCert: "/cert", TLSKey: "/key"}
	if c != want {
		t.Errorf("got %+v, want %+v", c, want)
	}
}

// Bad settings are refused before any connection, each with one line that
// names the flag and the file and quotes nothing of it.
func TestOptionsRefuseBadFiles(t *testing.T) {
	dir := t.TempDir()
	secret := "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4"
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("hello "+secret+"x\n"), 0o600)
	missing := filepath.Join(dir, "missing")
	tests := []struct {
		c    natsconn.Config
		want string
	}{
		{natsconn.Config{Creds: missing}, "-nats-creds " + missing + ": no such file"},
		{natsconn.Config{Creds: junk}, "-nats-creds " + junk + ": not a creds file"},
		{natsconn.Config{NKey: junk}, "-nats-nkey " + junk + ": no user nkey seed"},
		{natsconn.Config{NKey: missing}, "-nats-nkey " + missing + ": no such file"},
		{natsconn.Config{Creds: junk, NKey: junk}, "give one of them"},
		{natsconn.Config{TLSCA: junk}, "-nats-tls-ca " + junk + ": no PEM certificate"},
		{natsconn.Config{TLSCert: junk}, "-nats-tls-cert needs -nats-tls-key"},
		{natsconn.Config{TLSKey: junk}, "-nats-tls-key needs -nats-tls-cert"},
		{natsconn.Config{TLSCert: junk, TLSKey: junk}, "no PEM certificate in the certificate file"},
	}
	for _, tt := range tests {
		_, err := natsconn.Config.Options(tt.c)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.c, err, tt.want)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %q quotes the file or is not one line", tt.c, err)
		}
	}
}

// Each kind of credential connects to a server that requires it, and each
// wrong one is refused with a clear reason that holds no secret.
func TestEachCredentialKind(t *testing.T) {
	for _, kind := range testutil.AuthKinds {
		t.Run(kind, func(t *testing.T) {
			s := testutil.StartSecureNATS(t, kind)
			nc, err := s.Good.Connect("test")
			if err != nil {
				t.Fatalf("%+v: %v", s.Good, err)
			}
			if _, err := nc.Request("$JS.API.INFO", nil, 5e9); err != nil {
				t.Errorf("JetStream through %s: %v", kind, err)
			}
			if got := natsconn.Describe(nc); strings.Contains(got, s.Secret) {
				t.Errorf("Describe = %q: holds the secret", got)
			}
			nc.Close()
			for what, bad := range s.Bad {
				_, err := bad.Connect("test")
				if err == nil {
					t.Errorf("%s: connected", what)
					continue
				}
				msg := err.Error()
				t.Logf("%s: %s", what, msg)
				for _, secret := range s.Secrets() {
					if strings.Contains(msg, secret) {
						t.Errorf("%s: the error tells the secret: %s", what, msg)
					}
				}
				var ce *natsconn.Error
				if errors.As(err, &ce) && ce.Unreachable {
					t.Errorf("%s: called unreachable: %s", what, msg)
				}
				if strings.Contains(msg, "\n") {
					t.Errorf("%s: more than one line: %q", what, msg)
				}
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	_, err := natsconn.Config{URL: "nats://u:s3cret@127.0.0.1:1"}.Connect("test")
	var ce *natsconn.Error
	if !errors.As(err, &ce) || !ce.Unreachable || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "nats://u:xxxxx@127.0.0.1:1") {
		t.Errorf("err = %v", err)
	}
	nc, err := natsconn.Config{URL: "nats://127.0.0.1:1"}.ConnectOrRetry("test")
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

// Several comma-separated URLs (a cluster) connect through whichever
// answers, each with its own credentials, and print redacted.
func TestSeveralURLs(t *testing.T) {
	s := testutil.StartSecureNATS(t, testutil.AuthPassword)
	c := natsconn.Config{URL: "nats://worker:" + s.Secret + "@127.0.0.1:1," + s.Good.URL}
	nc, err := c.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if got := natsconn.Redact(c.URL); strings.Contains(got, s.Secret) || strings.Count(got, "worker:xxxxx@") != 2 {
		t.Errorf("Redact = %q", got)
	}
}
