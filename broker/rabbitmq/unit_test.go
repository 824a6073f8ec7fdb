package rabbitmq

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/dtsched/scheduler"
)

func TestOptionsValidated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := []string{"amqp://guest:guest@127.0.0.1:1/"}
	for name, opt := range map[string]Option{
		"empty prefix":       WithPrefix(""),
		"prefix colon":       WithPrefix("a:b"),
		"long prefix":        WithPrefix(strings.Repeat("p", 101)),
		"priority 0":         WithMaxPriority(0),
		"priority 256":       WithMaxPriority(256),
		"window 0":           WithConfirmWindow(0),
		"channels 0":         WithPublishChannels(0),
		"channels 65":        WithPublishChannels(65),
		"nil logger":         WithLogger(nil),
		"unbounded dlq":      WithDeadLetterLimits(0, 0),
		"negative dlq len":   WithDeadLetterLimits(-1, time.Hour),
		"dlq ttl too long":   WithDeadLetterLimits(10, 60*24*time.Hour),
		"dlq ttl fraction":   WithDeadLetterLimits(10, time.Microsecond),
		"empty conn name":    WithConnectionName(""),
		"heartbeat fraction": WithHeartbeat(1500 * time.Millisecond),
		"backoff inverted":   WithReconnectBackoff(time.Second, time.Millisecond),
		"nil option":         nil,
	} {
		_, err := New(ctx, url, opt)
		require.ErrorIs(t, err, scheduler.ErrInvalidOption, name)
		if opt != nil {
			var oe *OptionError
			require.ErrorAs(t, err, &oe, name)
		}
	}
	_, err := New(ctx, nil)
	require.ErrorIs(t, err, scheduler.ErrInvalidOption)
	_, err = New(ctx, []string{"http://example"})
	require.ErrorIs(t, err, scheduler.ErrInvalidOption)

	// Valid options on an unreachable server: a connection error, not an
	// option error.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = New(cctx, url, WithPrefix("ok.prefix_1-x"), WithMaxPriority(5), WithConfirmWindow(10),
		WithPublishChannels(4), WithLogger(zap.NewNop()), WithDeadLetterLimits(0, time.Hour),
		WithConnectionName("n"), WithHeartbeat(5*time.Second), WithReconnectBackoff(time.Millisecond, time.Second))
	require.Error(t, err)
	require.NotErrorIs(t, err, scheduler.ErrInvalidOption)
}

// topicMatch is RabbitMQ's topic matching: * one word, # zero or more.
func topicMatch(pattern, key string) bool {
	var match func(p, k []string) bool
	match = func(p, k []string) bool {
		if len(p) == 0 {
			return len(k) == 0
		}
		switch p[0] {
		case "#":
			for i := 0; i <= len(k); i++ {
				if match(p[1:], k[i:]) {
					return true
				}
			}
			return false
		case "*":
			return len(k) > 0 && match(p[1:], k[1:])
		}
		return len(k) > 0 && p[0] == k[0] && match(p[1:], k[1:])
	}
	return match(strings.Split(pattern, "."), strings.Split(key, "."))
}

// TestCascadeRouting follows a message through the cascade's bindings as
// RabbitMQ would and checks the time it waits is exactly its delay.
func TestCascadeRouting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		delay time.Duration
		queue string
	}{
		{time.Nanosecond, "q"}, {time.Second, "a.b.c"}, {1500 * time.Millisecond, "x"},
		{37 * time.Second, "work"}, {30 * 24 * time.Hour, "q-1_2"}, {MaxCascadeDelay, "q"},
	} {
		secs, capped := delaySeconds(tc.delay)
		require.False(t, capped)
		require.GreaterOrEqual(t, time.Duration(secs)*time.Second, tc.delay, "never shorter than asked")
		require.Less(t, time.Duration(secs)*time.Second-tc.delay, DelayPrecision)
		key := delayKey(secs, tc.queue)
		var waited int64
		for k := delayLevels - 1; k >= 0; k-- {
			one, zero := topicMatch(levelPattern(k, '1'), key), topicMatch(levelPattern(k, '0'), key)
			require.True(t, one != zero, "exactly one binding of level %d matches %q", k, key)
			if one {
				waited += 1 << k // waits in wait queue k, then dead-letters to the next level
			}
		}
		require.Equal(t, secs, waited)
		require.True(t, topicMatch(deliverPattern(tc.queue), key), "delivered to %s", tc.queue)
		require.False(t, topicMatch(deliverPattern(tc.queue+".x"), key))
		require.False(t, topicMatch(deliverPattern("other"), key))
	}
	secs, capped := delaySeconds(MaxCascadeDelay + time.Second)
	require.True(t, capped)
	require.Equal(t, int64(MaxCascadeDelay/time.Second), secs)
	require.GreaterOrEqual(t, MaxCascadeDelay, 30*24*time.Hour)
}

// TestHugeDelayIsCapped: a delay too long for one pass of the cascade, up
// to the largest Duration (what a RunAt centuries away saturates to), takes
// the longest pass and carries a not-before header no earlier than now plus
// the delay; the delays around the cap are as before.
func TestHugeDelayIsCapped(t *testing.T) {
	t.Parallel()
	b := &Broker{names: names{prefix: "p"}}
	now := time.Now()
	maxSecs := int64(MaxCascadeDelay / time.Second)
	for name, d := range map[string]time.Duration{
		"max int64":          math.MaxInt64,
		"500 years":          max(now.AddDate(500, 0, 0).Sub(now), 0), // as the scheduler computes it
		"200 years":          200 * 365 * 24 * time.Hour,
		"a second below max": math.MaxInt64 - time.Second + 1,
		"cap + 1 ns":         MaxCascadeDelay + time.Nanosecond,
		"cap + 1 s":          MaxCascadeDelay + time.Second,
		"cap + 1.5 ms":       MaxCascadeDelay + 1500*time.Microsecond,
		"max int64 - 1 ns":   math.MaxInt64 - 1,
	} {
		secs, capped := delaySeconds(d)
		require.True(t, capped, name)
		require.Equal(t, maxSecs, secs, name)

		o := b.encode(scheduler.Message{TaskID: "t", Queue: "q", Delay: d}, now)
		require.Equal(t, delayKey(maxSecs, "q"), o.key, name)
		ms, ok := o.pub.Headers[headerNotBefore].(int64)
		require.True(t, ok, "%s: not-before header missing", name)
		due := now.Add(d)
		require.False(t, time.UnixMilli(ms).Before(due), "%s: not-before %v earlier than %v", name, time.UnixMilli(ms), due)
		require.Less(t, time.UnixMilli(ms).Sub(due), time.Millisecond, name)
		nb, ok := notBefore(&amqp.Delivery{Headers: o.pub.Headers})
		require.True(t, ok, name)
		require.Positive(t, time.Until(nb), name)
	}
	require.Equal(t, int64(math.MaxInt64), notBeforeMillis(time.UnixMilli(math.MaxInt64-5), time.Second),
		"saturates instead of wrapping")

	// Up to the cap: rounded up to whole seconds, no header.
	for d, want := range map[time.Duration]int64{
		MaxCascadeDelay:                   maxSecs,
		MaxCascadeDelay - time.Nanosecond: maxSecs,
		MaxCascadeDelay - time.Second:     maxSecs - 1,
		MaxCascadeDelay - time.Second + 1: maxSecs,
		time.Nanosecond:                   1,
		time.Second:                       1,
		time.Second + time.Nanosecond:     2,
	} {
		secs, capped := delaySeconds(d)
		require.False(t, capped, d)
		require.Equal(t, want, secs, d)
		o := b.encode(scheduler.Message{TaskID: "t", Queue: "q", Delay: d}, now)
		require.Equal(t, delayKey(want, "q"), o.key, d)
		require.NotContains(t, o.pub.Headers, headerNotBefore, d)
	}
}

func TestDecodeIsStrict(t *testing.T) {
	t.Parallel()
	good := func() amqp.Delivery {
		return amqp.Delivery{ContentType: contentType, Type: messageType, Priority: 9,
			Body: encodeBody(scheduler.Message{TaskID: "abc-1", Attempt: 3, Queue: "q.1"})}
	}
	d := good()
	m, err := decode(&d, "q.1")
	require.NoError(t, err)
	require.Equal(t, scheduler.Message{TaskID: "abc-1", Attempt: 3, Queue: "q.1", Priority: 9}, m)
	d.Headers = amqp.Table{"x-death": []any{}}
	_, err = decode(&d, "q.1")
	require.NoError(t, err, "headers RabbitMQ adds are fine")

	// Other spellings of the same body go through the JSON decoder.
	for _, body := range []string{
		` {"queue":"q.1", "attempt":3,"task_id":"abc-1"} `,
		`{"task_id":"abc\u002d1","attempt":3,"queue":"q.1"}`,
		`{"task_id":"abc-1","attempt":3e0,"queue":"q.1"}`,
	} {
		d := good()
		d.Body = []byte(body)
		m, err := decode(&d, "q.1")
		if body == `{"task_id":"abc-1","attempt":3e0,"queue":"q.1"}` {
			require.Error(t, err, "3e0 is not an int")
			continue
		}
		require.NoError(t, err, body)
		require.Equal(t, scheduler.Message{TaskID: "abc-1", Attempt: 3, Queue: "q.1", Priority: 9}, m, body)
	}
	id, attempt, q, ok := parseCanonical(encodeBody(scheduler.Message{TaskID: "x_Y-9", Attempt: 123456789, Queue: "a.b"}))
	require.True(t, ok)
	require.Equal(t, []any{"x_Y-9", 123456789, "a.b"}, []any{id, attempt, q})

	for name, mut := range map[string]func(*amqp.Delivery){
		"leading zero": func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a","attempt":01,"queue":"q.1"}`) },
		"huge attempt": func(d *amqp.Delivery) {
			d.Body = []byte(`{"task_id":"a","attempt":99999999999999999999,"queue":"q.1"}`)
		},
		"escaped slash":  func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a\/b","attempt":1,"queue":"q.1"}`) },
		"duplicate key":  func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a","attempt":1,"queue":"q.1","queue":"q.2"}`) },
		"null id":        func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":null,"attempt":1,"queue":"q.1"}`) },
		"extra suffix":   func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a","attempt":1,"queue":"q.1"}x`) },
		"content type":   func(d *amqp.Delivery) { d.ContentType = "text/plain" },
		"type":           func(d *amqp.Delivery) { d.Type = "other" },
		"not json":       func(d *amqp.Delivery) { d.Body = []byte("garbage") },
		"empty":          func(d *amqp.Delivery) { d.Body = nil },
		"unknown field":  func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a","attempt":1,"queue":"q.1","x":1}`) },
		"missing field":  func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a","queue":"q.1"}`) },
		"trailing":       func(d *amqp.Delivery) { d.Body = append(d.Body, []byte(` {}`)...) },
		"bad id":         func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a/b","attempt":1,"queue":"q.1"}`) },
		"negative":       func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a","attempt":-1,"queue":"q.1"}`) },
		"fraction":       func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a","attempt":1.5,"queue":"q.1"}`) },
		"other queue":    func(d *amqp.Delivery) { d.Body = []byte(`{"task_id":"a","attempt":1,"queue":"q.2"}`) },
		"priority":       func(d *amqp.Delivery) { d.Priority = 10 },
		"bad not-before": func(d *amqp.Delivery) { d.Headers = amqp.Table{headerNotBefore: "soon"} },
	} {
		d := good()
		mut(&d)
		_, err := decode(&d, "q.1")
		require.Error(t, err, name)
	}
}

// FuzzDecode: decoding never panics, and whatever it accepts is a valid
// message that survives a round trip through the wire form.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"task_id":"abc","attempt":1,"queue":"q"}`), uint8(3))
	f.Add([]byte(`{"queue":"q","attempt":0,"task_id":"a"}`), uint8(0))
	f.Add([]byte(`garbage`), uint8(200))
	f.Fuzz(func(t *testing.T, body []byte, prio uint8) {
		d := amqp.Delivery{ContentType: contentType, Type: messageType, Priority: prio, Body: body}
		m, err := decode(&d, "q")
		if err != nil {
			return
		}
		require.NoError(t, validateMessage(m))
		d2 := amqp.Delivery{ContentType: contentType, Type: messageType, Priority: prio, Body: encodeBody(m)}
		m2, err := decode(&d2, "q")
		require.NoError(t, err)
		require.Equal(t, m, m2)
	})
}
