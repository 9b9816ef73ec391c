package eventlog

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// Error is an error with a stable code and the HTTP status the API answers
// it with. Every error the API returns comes from this catalog, so codes stay
// stable; callers branch on the sentinels below with errors.Is.
type Error struct {
	Status int
	Code   string
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// The catalog. docs/messaging.md lists every code.
var (
	ErrBadRequest          = &Error{http.StatusBadRequest, "bad_request", "bad request"}
	ErrMalformedJSON       = &Error{http.StatusBadRequest, "malformed_json", "malformed JSON"}
	ErrUnknownTopic        = &Error{http.StatusNotFound, "unknown_topic", "unknown topic"}
	ErrUnknownPartition    = &Error{http.StatusNotFound, "unknown_partition", "unknown partition"}
	ErrUnknownGroup        = &Error{http.StatusNotFound, "unknown_group", "unknown group"}
	ErrUnknownMember       = &Error{http.StatusNotFound, "unknown_member", "unknown member: join the group again"}
	ErrMethodNotAllowed    = &Error{http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed"}
	ErrTopicExists         = &Error{http.StatusConflict, "topic_exists", "topic already exists"}
	ErrTopicDeclared       = &Error{http.StatusConflict, "topic_declared", "topic is declared in config"}
	ErrReservedTopic       = &Error{http.StatusForbidden, "reserved_topic", "topics starting with \"__\" are internal"}
	ErrRebalance           = &Error{http.StatusConflict, "rebalance_in_progress", "the group rebalanced: take the new assignment and retry"}
	ErrNotAssigned         = &Error{http.StatusConflict, "partition_not_assigned", "partition is not assigned to this member"}
	ErrOffsetRegression    = &Error{http.StatusConflict, "offset_regression", "committed offsets never move backwards; use an explicit reset"}
	ErrRecordTooLarge      = &Error{http.StatusRequestEntityTooLarge, "record_too_large", "record too large"}
	ErrRequestTooLarge     = &Error{http.StatusRequestEntityTooLarge, "request_too_large", "request body too large"}
	ErrOffsetOutOfRange    = &Error{http.StatusRequestedRangeNotSatisfiable, "offset_out_of_range", "offset out of range"}
	ErrNotEnoughReplicas   = &Error{http.StatusServiceUnavailable, "not_enough_replicas", "fewer in-sync replicas than min_insync_replicas"}
	ErrWriteUnknown        = &Error{http.StatusServiceUnavailable, "write_unknown", "records were appended but their durability is unknown"}
	ErrIdempotencyConflict = &Error{http.StatusConflict, "idempotency_in_progress", "a request with this Idempotency-Key is still in progress"}
	ErrClosed              = &Error{http.StatusServiceUnavailable, "closed", "the event log is shutting down"}
	ErrTimeout             = &Error{http.StatusServiceUnavailable, "timeout", "the request ended before the write completed"}
	ErrStorage             = &Error{http.StatusInternalServerError, "storage_error", "storage error"}
)

// OffsetRangeError says which offsets are valid. It matches
// ErrOffsetOutOfRange with errors.Is.
type OffsetRangeError struct {
	Offset int64
	Start  int64 // log start offset
	End    int64 // high watermark: offsets in [Start, End] may be requested
}

func (e *OffsetRangeError) Error() string {
	return fmt.Sprintf("offset %d out of range: valid offsets are %d to %d", e.Offset, e.Start, e.End)
}

// Is makes errors.Is(err, ErrOffsetOutOfRange) true.
func (e *OffsetRangeError) Is(target error) bool { return target == ErrOffsetOutOfRange }

// errf wraps a catalog error with detail.
func errf(e *Error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", e, fmt.Sprintf(format, args...))
}

// classify returns the catalog entry behind err (ErrStorage when none).
func classify(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, ErrOffsetOutOfRange), errors.Is(err, segment.ErrOffsetOutOfRange):
		return ErrOffsetOutOfRange
	case errors.Is(err, segment.ErrRecordTooLarge):
		return ErrRecordTooLarge
	case errors.Is(err, segment.ErrDurabilityUnknown):
		return ErrWriteUnknown
	case errors.Is(err, segment.ErrClosed):
		return ErrClosed
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ErrTimeout
	}
	return ErrStorage
}
