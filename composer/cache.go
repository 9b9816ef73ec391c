package composer

import (
	"container/list"
	"net/http"
	"sync"
	"time"
)

// resultCache holds successful call results for a TTL, keyed by the rendered
// request. It is bounded in entries (least recently used goes first) and in
// bytes (each entry is at most its call's byte cap). Time is an input: callers
// pass now, so tests drive it with an injected clock.
type resultCache struct {
	maxEntries int
	maxBytes   int64

	mu    sync.Mutex
	bytes int64
	lru   *list.List // of *cacheEntry, front = most recent
	items map[string]*list.Element
}

type cacheEntry struct {
	key     string
	body    []byte
	header  http.Header // only the call's pass-through headers
	status  int
	expires time.Time
}

func newResultCache(maxEntries int, maxBytes int64) *resultCache {
	return &resultCache{maxEntries: maxEntries, maxBytes: maxBytes, lru: list.New(), items: map[string]*list.Element{}}
}

// get returns a fresh entry. Entries are immutable once stored.
func (c *resultCache) get(key string, now time.Time) (*cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.removeLocked(el)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return e, true
}

func (c *resultCache) put(e *cacheEntry) {
	size := int64(len(e.body) + len(e.key))
	if size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[e.key]; ok {
		c.removeLocked(el)
	}
	c.items[e.key] = c.lru.PushFront(e)
	c.bytes += size
	for c.lru.Len() > c.maxEntries || c.bytes > c.maxBytes {
		c.removeLocked(c.lru.Back())
	}
}

func (c *resultCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.items, e.key)
	c.bytes -= int64(len(e.body) + len(e.key))
}

func (c *resultCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
