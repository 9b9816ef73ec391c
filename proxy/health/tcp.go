package health

import "context"

// tcpProber checks that a TCP connection opens; it keeps nothing.
type tcpProber struct {
	addrs []string
}

func newTCPProber(_ *Config, addrs []string) *tcpProber { return &tcpProber{addrs: addrs} }

func (p *tcpProber) check(ctx context.Context, i int) error {
	c, err := dial(ctx, p.addrs[i])
	if err != nil {
		return connectFailure(err.(*dialError).err)
	}
	c.Close()
	return nil
}

func (p *tcpProber) reset(int, error) {}
func (p *tcpProber) close()           {}

var _ prober = (*tcpProber)(nil)
