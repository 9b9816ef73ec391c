package breaker

import "errors"

// RejectReason returns the token that names why a call was refused, for the
// x-outrigger-breaker response header and for metric labels: "open" for
// ErrOpen (including forced open), "half_open" for ErrTooManyProbes, the
// limit's config key ("max_connections", "max_pending_requests",
// "max_requests", "max_retries") for a *LimitError, and "" for any other
// error or nil.
func RejectReason(err error) string {
	switch e := err.(type) { // the unwrapped errors Allow and Acquire return, without reflection
	case nil:
		return ""
	case *LimitError:
		return e.Limit.String()
	case *OpenError:
		return "open"
	}
	if err == ErrTooManyProbes {
		return "half_open"
	}
	var le *LimitError
	switch {
	case errors.As(err, &le):
		return le.Limit.String()
	case errors.Is(err, ErrOpen):
		return "open"
	case errors.Is(err, ErrTooManyProbes):
		return "half_open"
	}
	return ""
}
