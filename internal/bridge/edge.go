package bridge

import (
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// DefaultReadTimeout bounds reading a request, body included.
const DefaultReadTimeout = 10 * time.Second

// boundRead limits how long reading the request may take: the
// connection's read deadline is ReadTimeout away until the body has been
// read, so a client that trickles its body in is cut off and never holds
// a handler past it. The deadline is lifted once the body is read: a
// stream's response may last long after its request (http.Server's own
// ReadTimeout would end it).
func (s *Server) boundRead(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(s.cfg.ReadTimeout)) != nil {
		return // not a real connection (a test's recorder)
	}
	r.Body = &boundedBody{ReadCloser: r.Body, rc: rc}
}

// boundedBody lifts the read deadline when the body ends.
type boundedBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *boundedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !b.done {
		b.done = true
		if !timedOut(err) {
			b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

// timedOut reports whether reading failed on the read deadline.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
