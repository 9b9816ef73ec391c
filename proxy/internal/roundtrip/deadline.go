package roundtrip

import (
	"context"
	"time"
)

// WithDeadline is ctx bounded by deadline too, when it is not zero: the
// transports take a round trip's deadline beside its context, and make
// a context of it only for what needs one (a dial, a wait for a
// connection).
func WithDeadline(ctx context.Context, deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, deadline)
}
