package eventlog

import "sync"

// notifier is a broadcast: Wait returns a channel that is closed by the next
// Broadcast. Waiters select on it together with their context, so no
// goroutine is needed per waiter and none can leak.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) Wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) Broadcast() {
	n.mu.Lock()
	ch := n.ch
	n.ch = nil
	n.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}
