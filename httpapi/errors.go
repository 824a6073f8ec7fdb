package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
)

// Error codes of the "code" member of an error response.
const (
	CodeMalformedJSON        = "malformed_json"         // 400: the body is not one well-formed JSON object
	CodeUnknownField         = "unknown_field"          // 400: the body has a member the API does not know
	CodeWrongType            = "wrong_type"             // 400: a member has the wrong JSON type
	CodeMissingField         = "missing_field"          // 400: a required member is absent
	CodeInvalidField         = "invalid_field"          // 400: a value is out of range or malformed (see "field")
	CodeInvalidID            = "invalid_id"             // 400: the task ID in the path is malformed
	CodeInvalidQuery         = "invalid_query"          // 400: an unknown or repeated query parameter
	CodeInvalidPath          = "invalid_path"           // 400: the path has "." or ".." segments or empty ones
	CodeUnauthorized         = "unauthorized"           // 401: the bearer token is missing or wrong
	CodeNotFound             = "not_found"              // 404: no such route
	CodeTaskNotFound         = "task_not_found"         // 404: no task has this ID
	CodeMethodNotAllowed     = "method_not_allowed"     // 405: see the Allow header
	CodeDuplicateTask        = "duplicate_task"         // 409: an unfinished task holds the unique key (see "task_id")
	CodeTaskFinished         = "task_finished"          // 409: the task is already succeeded, dead or canceled
	CodeNotRetryable         = "not_retryable"          // 409: only dead or canceled tasks can be retried
	CodeConflict             = "conflict"               // 409: the task changed meanwhile; try again
	CodeBodyTooLarge         = "body_too_large"         // 413: the body is over the limit
	CodeIdempotencyKeyReused = "idempotency_key_reused" // 422: the Idempotency-Key was used for a different request
	CodeUnsupportedMediaType = "unsupported_media_type" // 415: the body is not application/json
	CodeInternal             = "internal"               // 500: a bug or an unreadable task record; the server logged it
	CodeBackendUnavailable   = "backend_unavailable"    // 503: the broker or store did not answer
	CodeUnavailable          = "unavailable"            // 503: the scheduler is closed
	CodeUnhealthy            = "unhealthy"              // 503: from /healthz: a backend is down
)

// errorBody is the JSON of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`   // the request member at fault
	TaskID  string `json:"task_id,omitempty"` // the task concerned, e.g. the duplicate's holder
}

// writeJSON writes v as the JSON response with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own types are written; this is a bug.
		panic(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError writes an error response.
func writeError(w http.ResponseWriter, status int, d errorDetail) {
	writeJSON(w, status, errorBody{Error: d})
}

// fail answers a request whose scheduler call returned err. Sentinel
// errors are answers to the client; anything else means a backend did not
// answer and is logged.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ve *scheduler.ValidationError
	var dup *scheduler.DuplicateError
	switch {
	case errors.As(err, &ve):
		code := CodeInvalidField
		if ve.Field == "id" {
			code = CodeInvalidID
		}
		writeError(w, http.StatusBadRequest, errorDetail{Code: code, Message: ve.Field + ": " + ve.Reason, Field: ve.Field})
	case errors.As(err, &dup):
		writeError(w, http.StatusConflict, errorDetail{Code: CodeDuplicateTask,
			Message: "an unfinished task holds this unique key", Field: "unique_key", TaskID: dup.ExistingID})
	case errors.Is(err, scheduler.ErrTaskNotFound):
		writeError(w, http.StatusNotFound, errorDetail{Code: CodeTaskNotFound, Message: "no task has this id"})
	case errors.Is(err, scheduler.ErrTaskFinished):
		writeError(w, http.StatusConflict, errorDetail{Code: CodeTaskFinished, Message: "the task is already succeeded, dead or canceled"})
	case errors.Is(err, scheduler.ErrNotRetryable):
		writeError(w, http.StatusConflict, errorDetail{Code: CodeNotRetryable, Message: "only a dead or canceled task can be retried"})
	case errors.Is(err, scheduler.ErrStaleAttempt):
		writeError(w, http.StatusConflict, errorDetail{Code: CodeConflict, Message: "the task changed meanwhile; read it and try again"})
	case errors.Is(err, scheduler.ErrCorruptTask):
		h.log.Error("unreadable task record", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		writeError(w, http.StatusInternalServerError, errorDetail{Code: CodeInternal, Message: "the task's stored record is unreadable; it was logged"})
	case errors.Is(err, scheduler.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, errorDetail{Code: CodeUnavailable, Message: "the scheduler is closed"})
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		h.log.Debug("request canceled by the client", zap.String("method", r.Method), zap.String("path", r.URL.Path))
		writeError(w, http.StatusServiceUnavailable, errorDetail{Code: CodeBackendUnavailable, Message: "request canceled"})
	default:
		h.log.Error("backend call failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, errorDetail{Code: CodeBackendUnavailable,
			Message: "a backend (broker or store) is unavailable; try again later"})
	}
}
