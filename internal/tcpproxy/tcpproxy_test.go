package tcpproxy

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoServer answers every line with the same line until the client
// closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

func roundTrip(t *testing.T, c net.Conn, r *bufio.Reader, msg string) error {
	t.Helper()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	require.Equal(t, msg+"\n", got)
	return nil
}

// dial connects to p, closing the connection when the test ends.
func dial(t *testing.T, p *Proxy) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

// echoProxy returns a proxy to an echo server, closed when the test ends.
func echoProxy(t *testing.T) *Proxy {
	t.Helper()
	p, err := New(echoServer(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestForwardsAndCuts(t *testing.T) {
	p := echoProxy(t)
	c, r := dial(t, p)
	require.NoError(t, roundTrip(t, c, r, "hello"))
	require.Equal(t, 1, p.Open())

	require.Equal(t, 1, p.Cut())
	require.Error(t, roundTrip(t, c, r, "after the cut"), "a cut connection must fail")

	// A new connection gets through after the cut.
	c2, r2 := dial(t, p)
	require.NoError(t, roundTrip(t, c2, r2, "again"))
	require.Equal(t, 2, p.Accepted())
}

func TestCloseStopsAccepting(t *testing.T) {
	p, err := New(echoServer(t))
	require.NoError(t, err)
	require.NoError(t, p.Close())
	c, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err == nil {
		c.Close()
		t.Fatal("the proxy accepted a connection after Close")
	}
}

func TestBlackholeDropsWithoutClosing(t *testing.T) {
	p := echoProxy(t)
	c, r := dial(t, p)
	require.NoError(t, roundTrip(t, c, r, "hello"))

	require.Equal(t, 1, p.Blackhole())
	require.NoError(t, c.SetDeadline(time.Now().Add(300*time.Millisecond)))
	_, err := c.Write([]byte("into the void\n"))
	require.NoError(t, err, "writes still succeed: the connection stays open")
	_, err = r.ReadString('\n')
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "nothing comes back, and the connection is not closed: %v", err)
	require.Equal(t, 1, p.Open())

	// New connections are forwarded as usual.
	c2, r2 := dial(t, p)
	require.NoError(t, roundTrip(t, c2, r2, "again"))
}
