package eventlog

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outrigger-mesh/outrigger/eventlog/segment"
)

// Handler is the app-facing API (mounted on listeners.app_api). Every
// endpoint, body and status is documented in docs/messaging.md.
func (b *Broker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/topics/{topic}/records", b.handlePublish)
	mux.HandleFunc("GET /v1/topics/{topic}/partitions/{partition}/records", b.handleFetch)
	mux.HandleFunc("POST /v1/groups/{group}/members", b.handleJoin)
	mux.HandleFunc("POST /v1/groups/{group}/members/{member}/heartbeat", b.handleHeartbeat)
	mux.HandleFunc("POST /v1/groups/{group}/members/{member}/fetch", b.handleGroupFetch)
	mux.HandleFunc("POST /v1/groups/{group}/members/{member}/commit", b.handleCommit)
	mux.HandleFunc("DELETE /v1/groups/{group}/members/{member}", b.handleLeave)
	mux.HandleFunc("GET /v1/groups/{group}", b.handleGroup)
	mux.HandleFunc("POST /v1/groups/{group}/offsets/reset", b.handleReset)
	mux.HandleFunc("/", noRoute(mux))
	return mux
}

// noRoute answers a request no route of mux took: 405
// method_not_allowed, with an Allow header naming the methods the path
// takes, when a route of mux serves its path with another method (as
// net/http's ServeMux answers, which the catch-all "/" route stops it
// from doing); 404 not_found when none does.
func noRoute(mux *http.ServeMux) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodDelete, http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodPost, http.MethodPut} {
			other := r.WithContext(r.Context())
			other.Method = m
			if _, pattern := mux.Handler(other); pattern != "/" && pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, errf(ErrMethodNotAllowed, "%s %s: the path takes %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
			return
		}
		writeError(w, errf(&Error{http.StatusNotFound, "not_found", "no such endpoint"}, "%s %s", r.Method, r.URL.Path))
	}
}

// ---- wire types ----

// jsonRecord is a record as the API reads and writes it.
type jsonRecord struct {
	Topic     string `json:"topic,omitempty"`
	Partition *int32 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
	// Key is the key as UTF-8 text; KeyBase64 carries binary keys.
	Key       *string `json:"key,omitempty"`
	KeyBase64 *string `json:"key_base64,omitempty"`
	// Value is any JSON value, stored as its JSON text; ValueBase64 carries
	// other bytes. Neither (or "value": null) is a tombstone.
	Value       json.RawMessage   `json:"value,omitempty"`
	ValueBase64 *string           `json:"value_base64,omitempty"`
	Headers     map[string]string `json:"headers,omitempty"`
}

type publishRequest struct {
	jsonRecord
	Records []jsonRecord    `json:"records"`
	Acks    json.RawMessage `json:"acks"`
}

type publishResponse struct {
	Records  []ProduceResult `json:"records"`
	Replayed bool            `json:"replayed,omitempty"`
}

type errorBody struct {
	Error          string `json:"error"`
	Code           string `json:"code"`
	LogStartOffset *int64 `json:"log_start_offset,omitempty"`
	HighWatermark  *int64 `json:"high_watermark,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	e := classify(err)
	body := errorBody{Error: err.Error(), Code: e.Code}
	var re *OffsetRangeError
	if errors.As(err, &re) {
		body.LogStartOffset, body.HighWatermark = &re.Start, &re.End
	}
	writeJSON(w, e.Status, body)
}

// decodeBody reads one JSON value from the body, bounded by limit; unknown
// fields are refused so that typos do not pass silently.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any, optional bool) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == io.EOF && optional {
		return nil
	}
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON value")
	}
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON value")
		}
	}
	if err == nil {
		return nil
	}
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return errf(ErrRequestTooLarge, "body exceeds %d bytes", limit)
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF), err == io.EOF:
		return errf(ErrMalformedJSON, "%v", err)
	case errors.As(err, &te):
		return errf(ErrBadRequest, "field %s: expected %s", te.Field, te.Type)
	}
	return errf(ErrBadRequest, "%v", err)
}

func parseAcks(s string) (Acks, error) {
	switch strings.Trim(s, `"`) {
	case "", "all", "-1":
		return AcksAll, nil
	case "1":
		return AcksLeader, nil
	case "0":
		return AcksNone, nil
	}
	return 0, errf(ErrBadRequest, "acks must be 0, 1 or all, not %s", s)
}

func (j *jsonRecord) toProduce(i int) (ProduceRecord, error) {
	var pr ProduceRecord
	switch {
	case j.Key != nil && j.KeyBase64 != nil:
		return pr, errf(ErrBadRequest, "record %d: key and key_base64 are exclusive", i)
	case j.Key != nil:
		pr.Key = []byte(*j.Key)
	case j.KeyBase64 != nil:
		k, err := base64.StdEncoding.DecodeString(*j.KeyBase64)
		if err != nil {
			return pr, errf(ErrBadRequest, "record %d: key_base64: %v", i, err)
		}
		pr.Key = k
	}
	hasValue := len(j.Value) > 0 && string(j.Value) != "null"
	switch {
	case hasValue && j.ValueBase64 != nil:
		return pr, errf(ErrBadRequest, "record %d: value and value_base64 are exclusive", i)
	case hasValue:
		pr.Value = []byte(j.Value)
	case j.ValueBase64 != nil:
		v, err := base64.StdEncoding.DecodeString(*j.ValueBase64)
		if err != nil {
			return pr, errf(ErrBadRequest, "record %d: value_base64: %v", i, err)
		}
		pr.Value = v
		if pr.Value == nil {
			pr.Value = []byte{}
		}
	}
	if pr.Value == nil && pr.Key == nil {
		return pr, errf(ErrBadRequest, "record %d: needs a value (a record without one is a tombstone, which needs a key)", i)
	}
	if j.Offset != nil || j.Timestamp != "" || j.Topic != "" {
		return pr, errf(ErrBadRequest, "record %d: topic, offset and timestamp are assigned by the log", i)
	}
	for k, v := range j.Headers {
		if k == "" {
			return pr, errf(ErrBadRequest, "record %d: empty header name", i)
		}
		pr.Headers = append(pr.Headers, segment.Header{Key: k, Value: []byte(v)})
	}
	// Map order is random; keep stored headers deterministic.
	sortHeaders(pr.Headers)
	pr.Partition = j.Partition
	return pr, nil
}

func sortHeaders(h []segment.Header) {
	for i := 1; i < len(h); i++ {
		for j := i; j > 0 && h[j].Key < h[j-1].Key; j-- {
			h[j], h[j-1] = h[j-1], h[j]
		}
	}
}

func toJSONRecord(topic string, partition int32, r segment.Record) jsonRecord {
	off := r.Offset
	j := jsonRecord{Topic: topic, Partition: &partition, Offset: &off, Timestamp: r.Timestamp.UTC().Format(time.RFC3339Nano)}
	if r.Key != nil {
		if utf8.Valid(r.Key) {
			k := string(r.Key)
			j.Key = &k
		} else {
			k := base64.StdEncoding.EncodeToString(r.Key)
			j.KeyBase64 = &k
		}
	}
	switch {
	case r.Value == nil:
		j.Value = json.RawMessage("null")
	case json.Valid(r.Value):
		j.Value = json.RawMessage(r.Value)
	default:
		v := base64.StdEncoding.EncodeToString(r.Value)
		j.ValueBase64 = &v
	}
	if len(r.Headers) > 0 {
		j.Headers = make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			j.Headers[h.Key] = string(h.Value)
		}
	}
	return j
}

// ---- publish and fetch ----

func (b *Broker) handlePublish(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if strings.HasPrefix(topic, "__") {
		writeError(w, errf(ErrReservedTopic, "%q", topic))
		return
	}
	if _, err := b.Topic(topic); err != nil {
		writeError(w, err)
		return
	}
	var req publishRequest
	if err := decodeBody(w, r, cmpOr(b.cfg.MaxRequestBytes, DefaultMaxRequestBytes), &req, false); err != nil {
		writeError(w, err)
		return
	}
	single := req.Key != nil || req.KeyBase64 != nil || len(req.Value) > 0 || req.ValueBase64 != nil || req.Headers != nil || req.Partition != nil
	var in []jsonRecord
	switch {
	case req.Records != nil && single:
		writeError(w, errf(ErrBadRequest, "send either one record or \"records\", not both"))
		return
	case req.Records != nil:
		in = req.Records
	default:
		in = []jsonRecord{req.jsonRecord}
	}
	if len(in) == 0 {
		writeError(w, errf(ErrBadRequest, "records: at least one record is required"))
		return
	}
	acksText := r.URL.Query().Get("acks")
	if len(req.Acks) > 0 {
		if acksText != "" {
			writeError(w, errf(ErrBadRequest, "acks given both in the query and the body"))
			return
		}
		acksText = string(req.Acks)
	}
	acks, err := parseAcks(acksText)
	if err != nil {
		writeError(w, err)
		return
	}
	recs := make([]ProduceRecord, len(in))
	for i := range in {
		if recs[i], err = in[i].toProduce(i); err != nil {
			writeError(w, err)
			return
		}
	}
	var (
		results  []ProduceResult
		replayed bool
	)
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		results, replayed, err = b.ProduceIdempotent(r.Context(), topic, key, recs, acks)
	} else {
		results, err = b.Produce(r.Context(), topic, recs, acks)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	status := http.StatusOK
	if acks == AcksNone && !replayed {
		status = http.StatusAccepted
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, status, publishResponse{Records: results, Replayed: replayed})
}

// DefaultFetchBytes and MaxFetchBytes bound max_bytes of a fetch.
const (
	DefaultFetchBytes = 1 << 20
	MaxFetchBytes     = 16 << 20
)

func parseMaxBytes(s string) (int, error) {
	if s == "" {
		return DefaultFetchBytes, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxFetchBytes {
		return 0, errf(ErrBadRequest, "max_bytes must be an integer in [1, %d]", MaxFetchBytes)
	}
	return n, nil
}

// parseWait accepts a Go duration ("500ms", "5s") or integer milliseconds.
func parseWait(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		ms, merr := strconv.Atoi(s)
		if merr != nil {
			return 0, errf(ErrBadRequest, "wait must be a duration like 5s or milliseconds, not %q", s)
		}
		d = time.Duration(ms) * time.Millisecond
	}
	if d < 0 || d > MaxFetchWait {
		return 0, errf(ErrBadRequest, "wait must be between 0 and %s", MaxFetchWait)
	}
	return d, nil
}

type fetchResponse struct {
	Topic          string       `json:"topic"`
	Partition      int          `json:"partition"`
	Records        []jsonRecord `json:"records"`
	NextOffset     int64        `json:"next_offset"`
	HighWatermark  int64        `json:"high_watermark"`
	LogStartOffset int64        `json:"log_start_offset"`
}

func (b *Broker) handleFetch(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	t, err := b.Topic(topic)
	if err != nil {
		writeError(w, err)
		return
	}
	p, err := strconv.Atoi(r.PathValue("partition"))
	if err != nil {
		writeError(w, errf(ErrUnknownPartition, "partition must be a number, not %q", r.PathValue("partition")))
		return
	}
	q := r.URL.Query()
	offset, err := strconv.ParseInt(q.Get("offset"), 10, 64)
	if err != nil {
		if part, perr := t.Partition(p); perr == nil {
			writeError(w, fmt.Errorf("%w: offset must be an integer", &OffsetRangeError{Offset: -1, Start: part.LogStartOffset(), End: part.HighWatermark()}))
		} else {
			writeError(w, perr)
		}
		return
	}
	maxBytes, err := parseMaxBytes(q.Get("max_bytes"))
	if err != nil {
		writeError(w, err)
		return
	}
	wait, err := parseWait(q.Get("wait"))
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := b.Fetch(r.Context(), topic, p, offset, maxBytes, wait)
	if err != nil {
		writeError(w, err)
		return
	}
	out := fetchResponse{Topic: topic, Partition: p, Records: make([]jsonRecord, 0, len(res.Records)),
		NextOffset: res.NextOffset, HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset}
	for _, rec := range res.Records {
		out.Records = append(out.Records, toJSONRecord(topic, int32(p), rec))
	}
	writeJSON(w, http.StatusOK, out)
}

// ---- groups ----

type joinBody struct {
	JoinRequest
	SessionTimeout string `json:"session_timeout,omitempty"`
}

func (b *Broker) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req joinBody
	if err := decodeBody(w, r, 1<<20, &req, false); err != nil {
		writeError(w, err)
		return
	}
	if req.SessionTimeout != "" {
		d, err := time.ParseDuration(req.SessionTimeout)
		if err != nil {
			writeError(w, errf(ErrBadRequest, "session_timeout: %v", err))
			return
		}
		req.JoinRequest.SessionTimeout = d
	}
	st, err := b.JoinGroup(r.PathValue("group"), req.JoinRequest)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (b *Broker) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	st, err := b.Heartbeat(r.PathValue("group"), r.PathValue("member"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (b *Broker) handleLeave(w http.ResponseWriter, r *http.Request) {
	if err := b.LeaveGroup(r.PathValue("group"), r.PathValue("member")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type groupFetchBody struct {
	MaxBytes int    `json:"max_bytes,omitempty"`
	Wait     string `json:"wait,omitempty"`
}

type groupFetchResponse struct {
	MemberState
	Records []jsonRecord `json:"records"`
}

func (b *Broker) handleGroupFetch(w http.ResponseWriter, r *http.Request) {
	var req groupFetchBody
	if err := decodeBody(w, r, 1<<20, &req, true); err != nil {
		writeError(w, err)
		return
	}
	maxBytes := DefaultFetchBytes
	if req.MaxBytes != 0 {
		var err error
		if maxBytes, err = parseMaxBytes(strconv.Itoa(req.MaxBytes)); err != nil {
			writeError(w, err)
			return
		}
	}
	wait, err := parseWait(req.Wait)
	if err != nil {
		writeError(w, err)
		return
	}
	res, err := b.GroupFetch(r.Context(), r.PathValue("group"), r.PathValue("member"), maxBytes, wait)
	if err != nil {
		writeError(w, err)
		return
	}
	out := groupFetchResponse{MemberState: res.State, Records: make([]jsonRecord, 0, len(res.Records))}
	for _, rec := range res.Records {
		out.Records = append(out.Records, toJSONRecord(rec.Topic, rec.Partition, rec.Record))
	}
	writeJSON(w, http.StatusOK, out)
}

type commitBody struct {
	Generation *int32         `json:"generation"`
	Offsets    []CommitOffset `json:"offsets,omitempty"`
}

func (b *Broker) handleCommit(w http.ResponseWriter, r *http.Request) {
	var req commitBody
	if err := decodeBody(w, r, 1<<20, &req, false); err != nil {
		writeError(w, err)
		return
	}
	if req.Generation == nil {
		writeError(w, errf(ErrBadRequest, "generation is required"))
		return
	}
	done, err := b.CommitGroup(r.Context(), r.PathValue("group"), r.PathValue("member"), *req.Generation, req.Offsets)
	if err != nil {
		writeError(w, err)
		return
	}
	if done == nil {
		done = []CommitOffset{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"committed": done})
}

func (b *Broker) handleGroup(w http.ResponseWriter, r *http.Request) {
	gi, err := b.Group(r.PathValue("group"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, gi)
}

type resetBody struct {
	Topic     string `json:"topic"`
	Partition *int32 `json:"partition,omitempty"`
	To        string `json:"to"`
}

func (b *Broker) handleReset(w http.ResponseWriter, r *http.Request) {
	var req resetBody
	if err := decodeBody(w, r, 1<<20, &req, false); err != nil {
		writeError(w, err)
		return
	}
	t, err := b.Topic(req.Topic)
	if err != nil {
		writeError(w, err)
		return
	}
	parts := []int32{}
	if req.Partition != nil {
		parts = append(parts, *req.Partition)
	} else {
		for _, p := range t.partitions {
			parts = append(parts, p.ID())
		}
	}
	out := []CommitOffset{}
	for _, p := range parts {
		off, err := b.ResetOffset(r.Context(), r.PathValue("group"), req.Topic, p, req.To)
		if err != nil {
			writeError(w, err)
			return
		}
		out = append(out, CommitOffset{req.Topic, p, off})
	}
	writeJSON(w, http.StatusOK, map[string]any{"committed": out})
}
