package redisstore

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dtsched/scheduler"
)

// recordSeeds are records as this package writes them and a few as it
// does not.
func recordSeeds(t testing.TB) [][]byte {
	var out [][]byte
	at := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	for _, task := range []*scheduler.Task{
		newTask(t),
		newTask(t, func(x *scheduler.Task) {
			x.RunAt, x.CreatedAt = at, at
			x.Timeout, x.UniqueKey, x.LastError = 90*time.Second, "report / ü \"q\"", "boom\n<&>"
			x.Schedule, x.Tick = "nightly", at.Truncate(time.Hour)
			x.Result = []byte(`{"ok":true,"n":[1,2,{"rs":3}]}`)
		}),
		newTask(t, func(x *scheduler.Task) {
			x.RunAt, x.CreatedAt, x.StartedAt, x.FinishedAt = at.Add(time.Hour), at.In(time.FixedZone("x", 3600)), at, at
			x.Payload, x.Result = []byte{0, 1, 0xff}, []byte("<not json>")
			x.WorkerID, x.State, x.Attempt = "w-1", scheduler.StateSucceeded, 2
		}),
		newTask(t, func(x *scheduler.Task) { x.Payload = []byte(`"a string with ,\"pl\": inside"`) }),
		newTask(t, func(x *scheduler.Task) { x.Payload = nil }),
	} {
		js, err := record(task, "tok")
		require.NoError(t, err)
		out = append(out, js)
	}
	for _, s := range []string{
		`{"t":"x","q":"q","p":5,"s":"pending","a":0,"m":3,"c":"2026-03-14T15:09:26Z","future":{"a":[1,null,"}"]},"n":-7}`,
		`{"t":"x","q":"q","p":5,"s":"pending","a":0,"m":3,"c":"2026-03-14T15:09:26Z","e":"a\/b","ma":2}`,
		`{"t":"x","q":"q","p":05,"s":"pending","a":0,"m":3,"c":"2026-03-14T15:09:26Z"}`,
		`{"t":"x","q":"q","p":5.0,"s":"pending","a":0,"m":3,"c":"2026-03-14T15:09:26Z"}`,
		`{"t":"x","T":"y","q":"q","p":5,"s":"pending","a":0,"m":3,"c":"2026-03-14T15:09:26Z"}`,
		`{"t":"x","q":"q","p":5,"s":"pending","a":0,"m":3,"c":"2026-03-14T15:09:26Z","pl":tru}`,
		`{"t":"x", "q":"q","p":5,"s":"pending","a":0,"m":3,"c":"2026-03-14T15:09:26Z","pl":null}`,
		`{"t":"x","q":"q","p":5,"s":"pending","a":0,"m":3,"c":"2026-03-14T15:09:26Z","pl":null,"rs64":"AAE="}`,
		`{"t":"x","q":"q","p":5,"s":"pending","a":0,"m":3,"c":"not a time"}`,
		`{}`, `{"t":"x"}}`, `[1]`, `{"t":"x",}`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// Whatever record the fast decoder accepts, it decodes as encoding/json
// does.
func FuzzRecordParse(f *testing.F) {
	for _, s := range recordSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast recordJSON
		if !fast.parse(b) {
			return
		}
		var slow recordJSON
		require.NoError(t, json.Unmarshal(b, &slow), "%s", b)
		require.Equal(t, slow, fast, "%s", b)
	})
}

// The records this package writes take the fast path and read back as
// the tasks they were made from.
func TestRecordRoundTrip(t *testing.T) {
	for i, js := range recordSeeds(t)[:5] {
		var r recordJSON
		require.Equal(t, i != 1, r.parse(js), "record %d (only escaped strings take the slow path): %s", i, js)
		_, err := parseRecord("id", js)
		require.NoError(t, err)
	}
	task := newTask(t, func(x *scheduler.Task) { x.RunAt = time.Time{} })
	js, err := record(task, "")
	require.NoError(t, err)
	got, err := parseRecord(task.ID, js)
	require.NoError(t, err)
	require.Equal(t, task, got, "a zero RunAt stays zero")
}
