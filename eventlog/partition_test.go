package eventlog

import (
	"context"
	"errors"
	"testing"
)

// acks=all checks the in-sync set against min_insync_replicas before
// appending. On one node the set is this node alone, so a partition that
// asks for two refuses acks=all and accepts acks=1.
func TestAcksAllFailsFastWhenISRTooSmall(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), Config{Topics: map[string]TopicConfig{"t": {}}}, nil, Options{})
	top, _ := tb.Topic("t")
	p := top.Partitions()[0]
	p.minISR = 2
	_, err := p.Append(context.Background(), nil, AcksAll)
	if !errors.Is(err, ErrNotEnoughReplicas) {
		t.Fatalf("acks=all: %v", err)
	}
	if p.LogEndOffset() != 0 {
		t.Fatal("refused write reached the log")
	}
	if _, err := tb.Produce(context.Background(), "t", []ProduceRecord{{Value: []byte("1")}}, AcksLeader); err != nil {
		t.Fatalf("acks=1: %v", err)
	}
	var e errorBody
	if st := call(t, "POST", tb.api.URL+"/v1/topics/t/records?acks=all", `{"value":1}`, nil, &e); st != 503 || e.Code != "not_enough_replicas" {
		t.Fatalf("HTTP acks=all: %d %+v", st, e)
	}
}

func TestHighWatermarkBoundsReadsAndWakesWaiters(t *testing.T) {
	tb := openTestBroker(t, t.TempDir(), Config{Topics: map[string]TopicConfig{"t": {}}}, nil, Options{})
	top, _ := tb.Topic("t")
	p := top.Partitions()[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.WaitFor(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitFor on a cancelled context: %v", err)
	}
	ch := p.hwNotify.Wait()
	if _, err := tb.Produce(context.Background(), "t", []ProduceRecord{{Value: []byte("1")}, {Value: []byte("2")}}, AcksAll); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("waiters not woken by the high watermark moving")
	}
	if hw, err := p.WaitFor(context.Background(), 1); err != nil || hw != 2 {
		t.Fatalf("WaitFor(1) = %d, %v", hw, err)
	}
	// The high watermark never moves back.
	p.advanceHW(1)
	if p.HighWatermark() != 2 {
		t.Fatalf("high watermark moved back to %d", p.HighWatermark())
	}
	if _, _, err := p.Read(3, 100); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read past the high watermark: %v", err)
	}
}
