package redisstore

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/dtsched/scheduler"
	"github.com/dtsched/scheduler/internal/jsonbytes"
)

// A task record is a JSON object with short member names, in this order
// (see the package doc for the table). Members equal to what the reader
// assumes when they are missing are left out: the ID (the key names it),
// run_at when it equals created_at, empty strings, zero times, a zero
// msg_attempt. The payload and result come last.

// recordJSON is what parseRecord decodes.
type recordJSON struct {
	Type       string             `json:"t"`
	Queue      string             `json:"q"`
	Priority   scheduler.Priority `json:"p"`
	State      scheduler.State    `json:"s"`
	Attempt    int                `json:"a"`
	MaxRetries int                `json:"m"`
	Timeout    string             `json:"to"`
	RunAt      *time.Time         `json:"r"`
	CreatedAt  time.Time          `json:"c"`
	StartedAt  time.Time          `json:"b"`
	FinishedAt time.Time          `json:"f"`
	LastError  string             `json:"e"`
	WorkerID   string             `json:"w"`
	UniqueKey  string             `json:"u"`
	Schedule   string             `json:"sc"`
	Tick       time.Time          `json:"tk"`
	Payload    json.RawMessage    `json:"pl"`
	Payload64  []byte             `json:"pl64"`
	Result     json.RawMessage    `json:"rs"`
	Result64   []byte             `json:"rs64"`
}

// parseRecord decodes the record of the task id.
func parseRecord(id string, b []byte) (*scheduler.Task, error) {
	var r recordJSON
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	if !r.State.Valid() || r.Type == "" || r.Queue == "" || r.CreatedAt.IsZero() {
		return nil, fmt.Errorf("record holds state %q, type %q, queue %q, created_at %v", r.State, r.Type, r.Queue, r.CreatedAt)
	}
	var timeout time.Duration
	if r.Timeout != "" {
		d, err := time.ParseDuration(r.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		timeout = d
	}
	runAt := r.CreatedAt
	if r.RunAt != nil {
		runAt = *r.RunAt
	}
	return &scheduler.Task{
		ID: id, Type: r.Type, Queue: r.Queue, Priority: r.Priority, State: r.State,
		Attempt: r.Attempt, MaxRetries: r.MaxRetries, Timeout: timeout, RunAt: runAt,
		CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
		LastError: r.LastError, WorkerID: r.WorkerID, UniqueKey: r.UniqueKey,
		Schedule: r.Schedule, Tick: r.Tick,
		Payload: joinBytes(r.Payload, r.Payload64),
		Result:  joinBytes(r.Result, r.Result64),
	}, nil
}

func joinBytes(raw json.RawMessage, b64 []byte) []byte {
	if len(raw) > 0 {
		return []byte(raw)
	}
	return b64
}

// record returns the stored form of a new task. token, when not empty, is
// kept in the member "ct" until the first transition: a Create that
// go-redis resends finds its record byte for byte and knows it as its own.
func record(t *scheduler.Task, token string) ([]byte, error) {
	var cbuf, rbuf [40]byte
	created, err := appendTime(cbuf[:0], t.CreatedAt)
	if err != nil {
		return nil, err
	}
	runAt, err := appendTime(rbuf[:0], t.RunAt)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 192+len(t.Payload)+len(t.Result)+len(t.LastError)+len(t.UniqueKey))
	b = append(b, `{"t":`...)
	b = appendString(b, t.Type)
	b = append(b, `,"q":`...)
	b = appendString(b, t.Queue)
	b = append(b, `,"p":`...)
	b = strconv.AppendInt(b, int64(t.Priority), 10)
	b = append(b, `,"s":`...)
	b = appendString(b, string(t.State))
	b = append(b, `,"a":`...)
	b = strconv.AppendInt(b, int64(t.Attempt), 10)
	b = append(b, `,"m":`...)
	b = strconv.AppendInt(b, int64(t.MaxRetries), 10)
	if t.Timeout != 0 {
		b = append(b, `,"to":`...)
		b = appendString(b, t.Timeout.String())
	}
	if !bytes.Equal(runAt, created) {
		b = append(b, `,"r":"`...)
		b = append(b, runAt...)
		b = append(b, '"')
	}
	b = append(b, `,"c":"`...)
	b = append(b, created...)
	b = append(b, '"')
	for _, m := range []struct {
		name string
		t    time.Time
	}{{"b", t.StartedAt}, {"f", t.FinishedAt}} {
		if b, err = appendTimeMember(b, m.name, m.t); err != nil {
			return nil, err
		}
	}
	for _, m := range []struct{ name, v string }{{"e", t.LastError}, {"w", t.WorkerID}, {"u", t.UniqueKey}, {"sc", t.Schedule}} {
		if m.v != "" {
			b = append(b, `,"`...)
			b = append(b, m.name...)
			b = append(b, `":`...)
			b = appendString(b, m.v)
		}
	}
	if b, err = appendTimeMember(b, "tk", t.Tick); err != nil {
		return nil, err
	}
	if token != "" {
		b = append(b, `,"ct":`...)
		b = appendString(b, token)
	}
	b = appendBytesMember(b, "pl", t.Payload)
	b = appendBytesMember(b, "rs", t.Result)
	return append(b, '}'), nil
}

// appendTime appends t as time.Time.MarshalJSON writes it, without quotes.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	out, err := t.AppendText(b)
	if err != nil {
		return nil, &scheduler.ValidationError{Field: "time", Reason: "time outside the years 0 to 9999"}
	}
	return out, nil
}

// appendTimeMember appends `,"name":"<t>"` unless t is zero.
func appendTimeMember(b []byte, name string, t time.Time) ([]byte, error) {
	if t.IsZero() {
		return b, nil
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b, err := appendTime(b, t)
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}

// appendString appends s as a JSON string, as encoding/json writes it
// (invalid UTF-8 replaced by U+FFFD).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			js, _ := json.Marshal(s) // a string always encodes
			return append(b, js...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendBytesMember appends payload or result bytes v as the member
// `,"name":<v>` when v is JSON that reads back byte for byte, else as
// `,"name64":"<base64>"`; nothing when v is empty.
func appendBytesMember(b []byte, name string, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = append(b, `,"`...)
	b = append(b, name...)
	if jsonbytes.Embeddable(v) {
		b = append(b, `":`...)
		return append(b, v...)
	}
	b = append(b, `64":"`...)
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}
