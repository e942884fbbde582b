package testutil

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a NATS cluster with JetStream running in the test's process,
// its routes on loopback. A node can be killed and started again on the
// same ports and store.
type Cluster struct {
	t     testing.TB
	opts  []*server.Options
	nodes []*server.Server
}

// StartCluster runs n servers routed to each other, and waits until
// JetStream has a leader. They are shut down when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, nodes: make([]*server.Server, n)}
	var routes []string
	for i := range n {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       freePort(t),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: 8 << 20,
			Cluster:    server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: freePort(t)},
		}
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.Cluster.Port))
		c.opts = append(c.opts, o)
	}
	for i, o := range c.opts {
		o.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		c.Start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.Kill(i)
		}
	})
	c.waitJetStream()
	return c
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URLs are the client URLs of every node, comma-separated, as NATS
// clients take them.
func (c *Cluster) URLs() string {
	var urls []string
	for _, o := range c.opts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(urls, ",")
}

// Start starts node i (again).
func (c *Cluster) Start(i int) {
	c.t.Helper()
	srv, err := server.NewServer(c.opts[i].Clone())
	if err != nil {
		c.t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("node %d not ready", i+1)
	}
	c.nodes[i] = srv
}

// Kill shuts node i down at once.
func (c *Cluster) Kill(i int) {
	if srv := c.nodes[i]; srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
		c.nodes[i] = nil
	}
}

// StreamLeader is the index of the node leading the stream, or -1.
func (c *Cluster) StreamLeader(stream string) int {
	for i, srv := range c.nodes {
		if srv != nil && srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// WaitStreams waits until every node runs and each stream has a leader
// and all its replicas are current.
func (c *Cluster) WaitStreams(streams ...string) {
	c.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, name := range streams {
		for !c.streamHealthy(name) {
			if time.Now().After(deadline) {
				c.t.Fatalf("stream %s not healthy within a minute", name)
			}
			time.Sleep(50 * time.Millisecond) // the server offers nothing to wait on
		}
	}
}

func (c *Cluster) streamHealthy(name string) bool {
	leader := false
	for _, srv := range c.nodes {
		if srv == nil || !srv.JetStreamIsStreamCurrent(server.DEFAULT_GLOBAL_ACCOUNT, name) {
			return false
		}
		leader = leader || srv.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, name)
	}
	return leader
}

// waitJetStream waits until the cluster has elected its JetStream leader.
func (c *Cluster) waitJetStream() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, srv := range c.nodes {
			if srv != nil && srv.JetStreamIsLeader() {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatal("the cluster elected no JetStream leader within 30s")
		}
		time.Sleep(50 * time.Millisecond) // the server offers nothing to wait on
	}
}
