package health

import (
	"net"
	"testing"
)

func TestTCPFollowsListener(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	accept := func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}
	go accept(ln)
	var log transitions
	c := startChecker(t, fastConfig(TCP), []string{addr}, log.option())
	waitFor(t, "the first check succeeds", func() bool { return c.Status(0).Checked && c.Healthy(0) })

	ln.Close()
	waitFor(t, "the closed port is unhealthy", func() bool { return !c.Healthy(0) })
	if st := c.Status(0); st.LastError != "connect: connection refused" {
		t.Fatalf("closed port: %+v", st)
	}

	ln2 := listenAgain(t, addr)
	defer ln2.Close()
	go accept(ln2)
	waitFor(t, "the reopened port is healthy", func() bool { return c.Healthy(0) })
	c.Close()

	got := log.list()
	if len(got) != 2 || got[0].Healthy || got[0].Reason != "connect: connection refused" || !got[1].Healthy {
		t.Fatalf("transitions %+v", got)
	}
}
