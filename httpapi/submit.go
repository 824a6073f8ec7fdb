package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
)

// submitRequest is the body of POST /submit.
type submitRequest struct {
	Type       string          `json:"type"`
	Payload    json.RawMessage `json:"payload"`
	Priority   *int            `json:"priority"`
	Queue      string          `json:"queue"`
	MaxRetries *int            `json:"max_retries"`
	Timeout    json.RawMessage `json:"timeout"`
	Delay      json.RawMessage `json:"delay"`
	RunAt      *string         `json:"run_at"`
	UniqueKey  string          `json:"unique_key"`
}

// submitMembers are the member names of submitRequest, in order.
var submitMembers = func() []string {
	t := reflect.TypeFor[submitRequest]()
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = t.Field(i).Tag.Get("json")
	}
	return names
}()

// submission is a decoded, checked submitRequest.
type submission struct {
	typ        string
	payload    []byte
	priority   scheduler.Priority
	queue      string
	maxRetries int
	timeout    time.Duration
	delay      time.Duration
	runAt      time.Time
	uniqueKey  string
	idempotent bool // uniqueKey came from the Idempotency-Key header
}

func (s *submission) options() []scheduler.SubmitOption {
	opts := []scheduler.SubmitOption{
		scheduler.WithPriority(s.priority),
		scheduler.WithQueue(s.queue),
		scheduler.WithMaxRetries(s.maxRetries),
	}
	if s.timeout != 0 {
		opts = append(opts, scheduler.WithTimeout(s.timeout))
	}
	if !s.runAt.IsZero() {
		opts = append(opts, scheduler.WithRunAt(s.runAt))
	} else if s.delay != 0 {
		opts = append(opts, scheduler.WithDelay(s.delay))
	}
	if s.uniqueKey != "" {
		opts = append(opts, scheduler.WithUniqueKey(s.uniqueKey))
	}
	return opts
}

// sameAs reports whether t is the task s would have created: the test of
// an Idempotency-Key replay. Type, payload, queue, priority and timeout
// are compared; times are not (a delay is relative to the submission), nor
// the retry budget (a snooze grows it).
func (s *submission) sameAs(t *scheduler.Task) bool {
	return t.Type == s.typ && bytes.Equal(t.Payload, s.payload) && t.Queue == s.queue &&
		t.Priority == s.priority && t.Timeout == s.timeout
}

// requestError is a client mistake found while decoding a request.
type requestError struct {
	status int
	detail errorDetail
}

func (e *requestError) Error() string { return e.detail.Message }

func badRequest(code, field, format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, detail: errorDetail{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}}
}

// submit answers POST /submit.
func (h *handler) submit(w http.ResponseWriter, r *http.Request) {
	sub, rerr := h.decodeSubmit(w, r)
	if rerr != nil {
		if rerr.status == http.StatusRequestEntityTooLarge {
			w.Header().Set("Connection", "close")
		}
		writeError(w, rerr.status, rerr.detail)
		return
	}
	ctx, cancel := h.backend(r)
	defer cancel()
	id, err := h.sched.Submit(ctx, sub.typ, sub.payload, sub.options()...)
	var dup *scheduler.DuplicateError
	var ve *scheduler.ValidationError
	switch {
	case err == nil:
		w.Header().Set("Location", statusURL(r, id))
		h.writeTask(ctx, w, http.StatusAccepted, id, map[string]string{"id": id})
	case errors.As(err, &dup):
		if sub.idempotent {
			h.replay(ctx, w, r, sub, dup.ExistingID)
			return
		}
		h.fail(w, r, err)
	case errors.As(err, &ve):
		if ve.Field == "unique_key" && sub.idempotent {
			writeError(w, http.StatusBadRequest, errorDetail{Code: CodeInvalidField, Field: "Idempotency-Key", Message: "Idempotency-Key: " + ve.Reason})
			return
		}
		h.fail(w, r, err)
	case id != "":
		// Stored but not published: the scheduler canceled the task, or
		// leaves it to a worker's sweep. Its status tells which.
		h.log.Error("submit: the task was stored but its publish failed", zap.String("task_id", id), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, errorDetail{Code: CodeBackendUnavailable, TaskID: id,
			Message: "the task was stored but could not be published; its status shows whether it was canceled or will be published later"})
	default:
		h.fail(w, r, err)
	}
}

// replay answers a repeated submission with an Idempotency-Key whose task
// is not finished: 200 and that task when the request is the same, 422
// when it differs.
func (h *handler) replay(ctx context.Context, w http.ResponseWriter, r *http.Request, sub *submission, existing string) {
	t, err := h.sched.Status(ctx, existing)
	if errors.Is(err, scheduler.ErrTaskNotFound) {
		// The holder finished and vanished meanwhile: what is known is
		// that the key was held.
		writeError(w, http.StatusConflict, errorDetail{Code: CodeDuplicateTask, Field: "Idempotency-Key", TaskID: existing,
			Message: "an unfinished task holds this Idempotency-Key"})
		return
	}
	if err != nil {
		h.fail(w, r, err) // the store did not answer: the client may try again
		return
	}
	if !sub.sameAs(t) {
		writeError(w, http.StatusUnprocessableEntity, errorDetail{Code: CodeIdempotencyKeyReused, Field: "Idempotency-Key", TaskID: existing,
			Message: "this Idempotency-Key belongs to an unfinished task submitted with a different request"})
		return
	}
	w.Header().Set("Location", statusURL(r, existing))
	writeJSON(w, http.StatusOK, t)
}

// statusURL returns the Location of a task's status. Under
// http.StripPrefix, RequestURI still holds the full path, which gives the
// prefix back; failing that, the reference is relative to the submit URL.
func statusURL(r *http.Request, id string) string {
	reqPath, _, _ := strings.Cut(r.RequestURI, "?")
	if prefix, ok := strings.CutSuffix(reqPath, r.URL.EscapedPath()); ok && reqPath != "" &&
		(prefix == "" || prefix[0] == '/' && !strings.HasPrefix(prefix, "//")) {
		return prefix + "/status/" + id
	}
	return "status/" + id
}

// decodeSubmit reads and checks the body of a submission.
func (h *handler) decodeSubmit(w http.ResponseWriter, r *http.Request) (*submission, *requestError) {
	if err := checkJSONContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	limit := h.cfg.maxBody
	tooLarge := &requestError{status: http.StatusRequestEntityTooLarge, detail: errorDetail{Code: CodeBodyTooLarge,
		Message: fmt.Sprintf("the body is larger than %d bytes", limit)}}
	if r.ContentLength > limit {
		return nil, tooLarge // refused unread
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge
	case err != nil:
		return nil, badRequest(CodeMalformedJSON, "", "the body could not be read: %v", err)
	}
	keys := r.Header.Values("Idempotency-Key")
	if len(keys) > 1 {
		return nil, badRequest(CodeInvalidField, "Idempotency-Key", "Idempotency-Key: given more than once")
	}
	var key string
	if len(keys) == 1 {
		key = keys[0]
		if len(key) >= 2 && key[0] == '"' && key[len(key)-1] == '"' {
			key = key[1 : len(key)-1] // the structured-field string form
		}
		if key == "" {
			return nil, badRequest(CodeInvalidField, "Idempotency-Key", "Idempotency-Key: must not be empty")
		}
	}
	return decodeSubmission(body, key)
}

// checkJSONContentType accepts application/json, with charset utf-8 if a
// charset is given.
func checkJSONContentType(ct string) *requestError {
	unsupported := func(msg string) *requestError {
		return &requestError{status: http.StatusUnsupportedMediaType, detail: errorDetail{Code: CodeUnsupportedMediaType, Message: msg}}
	}
	if ct == "" {
		return unsupported("Content-Type must be application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return unsupported(fmt.Sprintf("Content-Type must be application/json, not %q", ct))
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return unsupported(fmt.Sprintf("Content-Type parameter %s=%s not supported; only charset=utf-8", k, v))
		}
	}
	return nil
}

// decodeSubmission decodes a submit body strictly: one JSON object of
// known members with the right types, in UTF-8, nothing after it.
// idempotencyKey, if not empty, is the Idempotency-Key header.
func decodeSubmission(body []byte, idempotencyKey string) (*submission, *requestError) {
	if !utf8.Valid(body) {
		return nil, badRequest(CodeMalformedJSON, "", "the body is not valid UTF-8")
	}
	if rerr := checkMembers(body); rerr != nil {
		return nil, rerr
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req submitRequest
	if err := dec.Decode(&req); err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest(CodeMalformedJSON, "", "unexpected data after the JSON object")
	}

	sub := &submission{
		typ:        req.Type,
		priority:   scheduler.PriorityDefault,
		queue:      req.Queue,
		maxRetries: scheduler.DefaultMaxRetries,
		uniqueKey:  req.UniqueKey,
	}
	if sub.typ == "" {
		return nil, badRequest(CodeMissingField, "type", "type: required")
	}
	if sub.queue == "" {
		sub.queue = scheduler.DefaultQueue
	}
	if req.Priority != nil {
		sub.priority = scheduler.Priority(*req.Priority)
		if sub.priority < scheduler.PriorityMin || sub.priority > scheduler.PriorityMax {
			return nil, badRequest(CodeInvalidField, "priority", "priority: must be %d to %d, got %d", scheduler.PriorityMin, scheduler.PriorityMax, *req.Priority)
		}
	}
	if req.MaxRetries != nil {
		sub.maxRetries = *req.MaxRetries
		if sub.maxRetries < 0 || sub.maxRetries > scheduler.MaxRetriesLimit {
			return nil, badRequest(CodeInvalidField, "max_retries", "max_retries: must be 0 to %d, got %d", scheduler.MaxRetriesLimit, *req.MaxRetries)
		}
	}
	var rerr *requestError
	if sub.timeout, rerr = duration("timeout", req.Timeout); rerr != nil {
		return nil, rerr
	}
	if sub.delay, rerr = duration("delay", req.Delay); rerr != nil {
		return nil, rerr
	}
	if req.RunAt != nil {
		if isSet(req.Delay) {
			return nil, badRequest(CodeInvalidField, "run_at", "run_at: give delay or run_at, not both")
		}
		t, err := time.Parse(time.RFC3339, *req.RunAt)
		if err != nil {
			return nil, badRequest(CodeInvalidField, "run_at", "run_at: not an RFC 3339 time like \"2030-01-02T15:04:05Z\"")
		}
		sub.runAt = t
	}
	if isSet(req.Payload) {
		// Compact, with <, >, & and U+2028/9 escaped: the same JSON value,
		// in a form shown as JSON (not base64) when the task is read back.
		var buf bytes.Buffer
		if err := json.Compact(&buf, req.Payload); err != nil {
			return nil, badRequest(CodeMalformedJSON, "payload", "payload: %v", err)
		}
		var esc bytes.Buffer
		json.HTMLEscape(&esc, buf.Bytes())
		sub.payload = esc.Bytes()
	}
	if idempotencyKey != "" {
		if sub.uniqueKey != "" && sub.uniqueKey != idempotencyKey {
			return nil, badRequest(CodeInvalidField, "unique_key", "unique_key: differs from the Idempotency-Key header")
		}
		sub.uniqueKey, sub.idempotent = idempotencyKey, true
	}
	return sub, nil
}

// isSet reports whether a raw member was given and is not null.
func isSet(raw json.RawMessage) bool {
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// maxSeconds is the largest number of seconds a time.Duration holds.
const maxSeconds = float64(math.MaxInt64 / int64(time.Second))

// duration decodes a duration member: a Go duration string ("1m30s") or a
// number of seconds (90, 0.5).
func duration(field string, raw json.RawMessage) (time.Duration, *requestError) {
	if !isSet(raw) {
		return 0, nil
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, badRequest(CodeMalformedJSON, field, "%s: %v", field, err)
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, badRequest(CodeInvalidField, field, "%s: not a duration like \"30s\" or \"1m30s\": %q", field, s)
		}
		if d < 0 {
			return 0, badRequest(CodeInvalidField, field, "%s: must not be negative", field)
		}
		return d, nil
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || f > maxSeconds {
			return 0, badRequest(CodeInvalidField, field, "%s: a number of seconds up to %.0f", field, maxSeconds)
		}
		if f < 0 {
			return 0, badRequest(CodeInvalidField, field, "%s: must not be negative", field)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	return 0, badRequest(CodeWrongType, field, "%s: expected a duration string like \"30s\" or a number of seconds", field)
}

// decodeError turns a json.Decoder error into a client error.
// checkMembers refuses what encoding/json lets through: a body that is not
// an object (null), a member whose name is not exactly a documented one
// (json matches names without regard to case) and a member given twice.
// Malformed JSON it leaves to the decoder, which says where.
func checkMembers(body []byte) *requestError {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return badRequest(CodeWrongType, "", "the body must be a JSON object")
	}
	seen := make(map[string]bool, len(submitMembers))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := tok.(string)
		if !slices.Contains(submitMembers, name) {
			return unknownMember(name)
		}
		if seen[name] {
			return badRequest(CodeInvalidField, name, "%s: given twice", name)
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
	}
	return nil
}

// unknownMember is the error for a member the API does not know.
func unknownMember(name string) *requestError {
	return badRequest(CodeUnknownField, name, "unknown field %q; known: %s", name, strings.Join(submitMembers, ", "))
}

func decodeError(err error) *requestError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return badRequest(CodeMalformedJSON, "", "the body is empty; expected a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest(CodeMalformedJSON, "", "malformed JSON: the body ends too early")
	case errors.As(err, &syn):
		return badRequest(CodeMalformedJSON, "", "malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return badRequest(CodeWrongType, "", "the body must be a JSON object, not %s", typ.Value)
		}
		return badRequest(CodeWrongType, typ.Field, "%s: expected %s, got %s", typ.Field, jsonKind(typ.Type), typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if n, uerr := strconv.Unquote(name); uerr == nil {
			name = n
		}
		return unknownMember(name)
	}
	return badRequest(CodeMalformedJSON, "", "malformed JSON: %v", err)
}

// jsonKind names the JSON type a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "another type"
}
