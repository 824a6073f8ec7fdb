package rabbitmq

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/dtsched/scheduler"
)

// The wire form of a message:
//
//	properties: content-type contentType, type messageType,
//	            delivery-mode persistent, priority Message.Priority,
//	            message-id a unique id of this publish
//	body:       {"task_id":"<id>","attempt":<n>,"queue":"<queue>"}
//	headers:    headerNotBefore (only for delays beyond MaxCascadeDelay)
//
// Copies in a dead-letter queue carry headerReason, headerQueue and
// headerOriginalID too.
const (
	contentType = "application/json"
	messageType = "scheduler.message.v1"

	// headerNotBefore holds the Unix time in milliseconds before which a
	// message must not be delivered.
	headerNotBefore = "x-scheduler-not-before"
	// headerReason is why a message was dead-lettered.
	headerReason = "x-scheduler-reason"
	// headerQueue is the queue a dead-lettered message came from.
	headerQueue = "x-scheduler-queue"
	// headerOriginalID is the message-id a dead-lettered message had (the
	// copy gets a message-id of its own).
	headerOriginalID = "x-scheduler-original-message-id"
)

// validate checks m before anything is published, with the root package's
// typed validation errors.
func validateMessage(m scheduler.Message) error {
	if err := scheduler.ValidateID(m.TaskID); err != nil {
		return err
	}
	probe := scheduler.Task{ID: m.TaskID, Type: "probe", Queue: m.Queue, Priority: m.Priority,
		State: scheduler.StatePending, Attempt: m.Attempt, CreatedAt: time.Unix(1, 0)}
	if err := probe.Validate(); err != nil {
		return err
	}
	if m.Delay < 0 {
		return &scheduler.ValidationError{Field: "delay", Reason: "must not be negative"}
	}
	return nil
}

// encodeBody writes the body of m. The task ID and queue name are
// validated, so they need no JSON escaping.
func encodeBody(m scheduler.Message) []byte {
	buf := make([]byte, 0, 40+len(m.TaskID)+len(m.Queue))
	buf = append(buf, `{"task_id":"`...)
	buf = append(buf, m.TaskID...)
	buf = append(buf, `","attempt":`...)
	buf = strconv.AppendInt(buf, int64(m.Attempt), 10)
	buf = append(buf, `,"queue":"`...)
	buf = append(buf, m.Queue...)
	buf = append(buf, `"}`...)
	return buf
}

type wireBody struct {
	TaskID  *string `json:"task_id"`
	Attempt *int    `json:"attempt"`
	Queue   *string `json:"queue"`
}

// decode turns a delivery from queue into a Message, strictly: the
// content type, type, every body field and nothing else, a valid task ID,
// a non-negative attempt, the queue it was consumed from and a priority in
// range. Headers RabbitMQ adds (x-death) are allowed.
func decode(d *amqp.Delivery, queue string) (scheduler.Message, error) {
	var m scheduler.Message
	if d.ContentType != contentType {
		return m, fmt.Errorf("content type %q, want %q", d.ContentType, contentType)
	}
	if d.Type != messageType {
		return m, fmt.Errorf("message type %q, want %q", d.Type, messageType)
	}
	if id, attempt, q, ok := parseCanonical(d.Body); ok {
		if err := scheduler.ValidateID(id); err != nil {
			return m, fmt.Errorf("body: %w", err)
		}
		if q != queue {
			return m, fmt.Errorf("body: queue %q, consumed from %q", q, queue)
		}
		return finishDecode(d, id, attempt, queue)
	}
	dec := json.NewDecoder(bytes.NewReader(d.Body))
	dec.DisallowUnknownFields()
	var w wireBody
	if err := dec.Decode(&w); err != nil {
		return m, fmt.Errorf("body: %w", err)
	}
	if len(bytes.TrimSpace(d.Body[dec.InputOffset():])) != 0 {
		return m, errors.New("body: trailing data")
	}
	switch {
	case w.TaskID == nil:
		return m, errors.New("body: task_id missing")
	case w.Attempt == nil:
		return m, errors.New("body: attempt missing")
	case w.Queue == nil:
		return m, errors.New("body: queue missing")
	}
	if err := scheduler.ValidateID(*w.TaskID); err != nil {
		return m, fmt.Errorf("body: %w", err)
	}
	if *w.Attempt < 0 {
		return m, fmt.Errorf("body: negative attempt %d", *w.Attempt)
	}
	if *w.Queue != queue {
		return m, fmt.Errorf("body: queue %q, consumed from %q", *w.Queue, queue)
	}
	return finishDecode(d, *w.TaskID, *w.Attempt, queue)
}

// finishDecode checks the properties and headers of a delivery whose body
// decoded.
func finishDecode(d *amqp.Delivery, id string, attempt int, queue string) (scheduler.Message, error) {
	var m scheduler.Message
	if p := scheduler.Priority(d.Priority); p > scheduler.PriorityMax {
		return m, fmt.Errorf("priority %d above %d", p, scheduler.PriorityMax)
	}
	if v, ok := d.Headers[headerNotBefore]; ok {
		if _, ok := v.(int64); !ok {
			return m, fmt.Errorf("header %s: %T, want int64", headerNotBefore, v)
		}
	}
	m = scheduler.Message{TaskID: id, Attempt: attempt, Queue: queue, Priority: scheduler.Priority(d.Priority)}
	return m, nil
}

// parseCanonical reads a body in exactly the form encodeBody writes,
// without allocating beyond the two strings; ok is false for anything else
// (which the strict JSON decoder then judges). The strings it returns hold
// no quote or backslash, and the attempt has no sign, leading zero or
// overflow.
func parseCanonical(b []byte) (id string, attempt int, queue string, ok bool) {
	const p1, p2, p3, p4 = `{"task_id":"`, `","attempt":`, `,"queue":"`, `"}`
	rest, ok := bytes.CutPrefix(b, []byte(p1))
	if !ok {
		return "", 0, "", false
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return "", 0, "", false
	}
	idb := rest[:i]
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(p2)); !ok {
		return "", 0, "", false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || n > 9 || (n > 1 && rest[0] == '0') {
		return "", 0, "", false
	}
	for _, c := range rest[:n] {
		attempt = attempt*10 + int(c-'0')
	}
	if rest, ok = bytes.CutPrefix(rest[n:], []byte(p3)); !ok {
		return "", 0, "", false
	}
	j := bytes.IndexByte(rest, '"')
	if j < 0 || bytes.IndexByte(rest[:j], '\\') >= 0 || string(rest[j:]) != p4 {
		return "", 0, "", false
	}
	return string(idb), attempt, string(rest[:j]), true
}

// notBefore returns the not-before time a delivery carries, if any.
func notBefore(d *amqp.Delivery) (time.Time, bool) {
	v, ok := d.Headers[headerNotBefore].(int64)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMilli(v), true
}

// notBeforeMillis returns the Unix time in milliseconds before which a
// message delayed by d at now must not be delivered: now+d rounded up to a
// whole millisecond, or math.MaxInt64 where that does not fit in an int64.
// It cannot overflow, however long d is; a negative d counts as 0.
func notBeforeMillis(now time.Time, d time.Duration) int64 {
	d = max(d, 0)
	base := now.UnixMilli()
	frac := now.Sub(time.UnixMilli(base)) // 0 <= frac < 1 ms
	ms := int64(d/time.Millisecond) + int64((d%time.Millisecond+frac+time.Millisecond-1)/time.Millisecond)
	if base > math.MaxInt64-ms {
		return math.MaxInt64
	}
	return base + ms
}

// outgoing is one message ready to publish.
type outgoing struct {
	queue    string // scheduler queue name (for declaration)
	exchange string
	key      string
	delayed  bool
	pub      amqp.Publishing
}

// encode builds the publishing of m at now.
func (b *Broker) encode(m scheduler.Message, now time.Time) outgoing {
	mode := amqp.Persistent
	if b.opts.transient {
		mode = amqp.Transient
	}
	o := outgoing{
		queue: m.Queue,
		key:   b.names.work(m.Queue),
		pub: amqp.Publishing{
			ContentType:  contentType,
			Type:         messageType,
			DeliveryMode: mode,
			Priority:     uint8(m.Priority),
			Body:         encodeBody(m),
		},
	}
	if m.Delay > 0 {
		secs, capped := delaySeconds(m.Delay)
		o.delayed = true
		o.exchange = b.names.delay(delayLevels - 1)
		o.key = delayKey(secs, m.Queue)
		if capped {
			o.pub.Headers = amqp.Table{headerNotBefore: notBeforeMillis(now, m.Delay)}
		}
	}
	return o
}
