package scheduler

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
)

// timing is when a schedule ticks: a set of instants that every node
// computes alike from the schedule's definition, whatever its local time
// zone or start time.
type timing interface {
	// next returns the first tick strictly after t, or the zero time when
	// there is none within five years.
	next(t time.Time) time.Time
}

// cronParser reads standard five-field specs, descriptors (@daily,
// @every 10s) and a CRON_TZ= or TZ= prefix.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// parseTiming turns a Spec or an Every into a timing and the time zone it
// is read in. loc is Periodic.Location (nil for UTC).
func parseTiming(spec string, every time.Duration, loc *time.Location, now time.Time) (timing, *time.Location, error) {
	switch {
	case spec == "" && every == 0:
		return nil, nil, scheduleErr("spec", "give a Spec or an Every", nil)
	case spec != "" && every != 0:
		return nil, nil, scheduleErr("spec", "give a Spec or an Every, not both", nil)
	case every != 0:
		if loc != nil {
			return nil, nil, scheduleErr("location", "an interval ticks in absolute time; a time zone applies to a cron Spec only", nil)
		}
		t, err := newInterval(every)
		return t, time.UTC, err
	}
	spec = strings.TrimSpace(spec)
	if rest, ok := strings.CutPrefix(spec, "@every"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
		if loc != nil {
			return nil, nil, scheduleErr("location", "@every ticks in absolute time; a time zone applies to a cron Spec only", nil)
		}
		d, err := time.ParseDuration(strings.TrimSpace(rest))
		if err != nil {
			return nil, nil, scheduleErr("spec", fmt.Sprintf("%q: not a duration", spec), err)
		}
		t, err := newInterval(d)
		return t, time.UTC, err
	}
	zoned := strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=")
	if zoned && loc != nil {
		return nil, nil, scheduleErr("location", "the Spec names its time zone (CRON_TZ=); do not set Location too", nil)
	}
	parsed, err := cronParser.Parse(spec)
	if err != nil {
		return nil, nil, scheduleErr("spec", fmt.Sprintf("%q: %v", spec, err), err)
	}
	ss, ok := parsed.(*cron.SpecSchedule)
	if !ok { // CRON_TZ=... @every
		return nil, nil, scheduleErr("spec", fmt.Sprintf("%q: @every ticks in absolute time; drop the time zone", spec), nil)
	}
	switch {
	case zoned && ss.Location == time.Local:
		return nil, nil, scheduleErr("spec", "the process's Local zone may differ between nodes; name a zone such as CRON_TZ=Europe/Berlin", nil)
	case zoned:
		loc = ss.Location
	case loc == nil:
		loc = time.UTC
	case loc == time.Local:
		return nil, nil, scheduleErr("location", "time.Local may differ between nodes; use time.LoadLocation with a zone name", nil)
	}
	c := newCron(ss, loc)
	if c.next(now).IsZero() {
		return nil, nil, scheduleErr("spec", fmt.Sprintf("%q never fires", spec), nil)
	}
	return c, loc, nil
}

// interval ticks at every multiple of its period since the Unix epoch
// (1970-01-01 00:00 UTC), so every node agrees on the ticks however late it
// started: @every 1h ticks at each full hour UTC.
type interval struct{ every time.Duration }

func newInterval(d time.Duration) (interval, error) {
	if d < time.Second {
		return interval{}, scheduleErr("every", fmt.Sprintf("%s: must be at least one second", d), nil)
	}
	return interval{every: d}, nil
}

func (i interval) next(t time.Time) time.Time {
	k := floorDiv(t.UnixNano(), int64(i.every)) + 1
	return time.Unix(0, k*int64(i.every)).UTC()
}

// latest returns the last tick at or before t.
func (i interval) latest(t time.Time) time.Time {
	return time.Unix(0, floorDiv(t.UnixNano(), int64(i.every))*int64(i.every)).UTC()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// cronSchedule is a cron spec read in a time zone.
//
// A spec whose hour field names particular hours (a daily 02:30, a job
// every 6 hours) is a wall-clock schedule: each matching local time fires
// once. When a daylight-saving change skips it (spring forward), it fires
// at the end of the gap, when the clocks jump (02:30 fires at 03:00); when
// a change repeats it (fall back), it fires at its first occurrence only.
// This is how ISC cron treats jobs at fixed times.
//
// A spec running in every hour (*/15 * * * *, 0 * * * *) keeps to real
// time instead, as ISC cron does for jobs more frequent than hourly: it
// fires at each instant whose local time matches, so none runs in a
// skipped hour and each runs in both copies of a repeated hour.
type cronSchedule struct {
	inst  *cron.SpecSchedule // read in loc, instant by instant
	civil *cron.SpecSchedule // the same fields over wall-clock times (kept in UTC)
	loc   *time.Location
	wall  bool // the hour field names particular hours
}

const allHours = 1<<24 - 1

func newCron(ss *cron.SpecSchedule, loc *time.Location) *cronSchedule {
	inst, civil := *ss, *ss
	inst.Location, civil.Location = loc, time.UTC
	return &cronSchedule{inst: &inst, civil: &civil, loc: loc, wall: ss.Hour&allHours != allHours}
}

func (c *cronSchedule) next(t time.Time) time.Time {
	if !c.wall || c.loc == time.UTC {
		n := c.inst.Next(t)
		if n.IsZero() {
			return n
		}
		n = n.In(c.loc)
		if _, end := t.In(c.loc).ZoneBounds(); end.IsZero() || n.Before(end) {
			return n // one zone offset from t to n: a plain reading is right
		}
		return c.instantNext(t)
	}
	w := wallClock(t.In(c.loc))
	// Local times at or before t's own cannot fall after t (resolve maps
	// later local times to later or equal instants); the first later one
	// that does is the answer. In a repeated hour the loop steps over the
	// local times that already fired in its first copy.
	for range 10000 {
		w = c.civil.Next(w)
		if w.IsZero() {
			return w
		}
		if r := resolve(w, c.loc); r.After(t) {
			return r
		}
	}
	return time.Time{}
}

// maxShift bounds how far the local time can step back at a zone change
// (a fall-back), and so how much earlier than t's own local time a later
// instant's can be.
const maxShift = 3 * time.Hour

// instantNext is next for a spec running in every hour when a zone change
// lies ahead: the first instant after t whose local time matches, found
// over the matching local times from maxShift before t's on, each at every
// instant it happens (none in a skipped hour, two in a repeated one).
func (c *cronSchedule) instantNext(t time.Time) time.Time {
	var best time.Time
	w := wallClock(t.In(c.loc)).Add(-maxShift)
	for range 100000 {
		if w = c.civil.Next(w); w.IsZero() {
			break
		}
		if !best.IsZero() && w.After(wallClock(best).Add(maxShift)) {
			break // later local times happen later than best
		}
		occ, _ := occurrences(w, c.loc)
		for _, i := range occ {
			if i.After(t) && (best.IsZero() || i.Before(best)) {
				best = i
			}
		}
	}
	return best
}

// wallClock returns t's local date and time as the same reading in UTC.
func wallClock(t time.Time) time.Time {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	return time.Date(y, mo, d, h, mi, s, t.Nanosecond(), time.UTC)
}

// resolve returns the instant a local time w (given as the same reading in
// UTC) happens in loc: its first occurrence if the clocks show it twice,
// the end of the gap if they skip it.
func resolve(w time.Time, loc *time.Location) time.Time {
	occ, bounds := occurrences(w, loc)
	if len(occ) > 0 {
		return occ[0]
	}
	for _, b := range bounds {
		if wallClock(b.Add(-1).In(loc)).Before(w) && wallClock(b.In(loc)).After(w) {
			return b.In(loc)
		}
	}
	return time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
}

// occurrences returns, earliest first, the instants whose local time in
// loc is w (given as the same reading in UTC), and the instants near w
// where loc's offset changes.
func occurrences(w time.Time, loc *time.Location) (occ, bounds []time.Time) {
	// Zone offsets stay within ±14h (±15h covers historical ones): collect
	// the offsets loc uses around w and the instants where they change.
	from, to := w.Add(-15*time.Hour).In(loc), w.Add(15*time.Hour)
	for x := from; ; {
		_, off := x.Zone()
		if c := w.Add(-time.Duration(off) * time.Second).In(loc); wallClock(c).Equal(w) && !slices.ContainsFunc(occ, c.Equal) {
			occ = append(occ, c)
		}
		_, end := x.ZoneBounds()
		if end.IsZero() || end.After(to) {
			break
		}
		bounds = append(bounds, end)
		x = end.In(loc)
	}
	slices.SortFunc(occ, func(a, b time.Time) int { return a.Compare(b) })
	return occ, bounds
}

// latestTick returns the last tick in (t-window, t], or the zero time.
func latestTick(tm timing, t time.Time, window time.Duration) time.Time {
	if window <= 0 {
		return time.Time{}
	}
	lo := t.Add(-window)
	if i, ok := tm.(interval); ok {
		if l := i.latest(t); l.After(lo) {
			return l
		}
		return time.Time{}
	}
	if n := tm.next(lo); n.IsZero() || n.After(t) {
		return time.Time{}
	}
	// next(lo) <= t < next(t): narrow [lo, hi] down to the last instant
	// before the last tick.
	hi := t
	for hi.Sub(lo) > 1 {
		mid := lo.Add(hi.Sub(lo) / 2)
		if n := tm.next(mid); !n.IsZero() && !n.After(t) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return tm.next(lo)
}

// maxCounted bounds countTicks for cron schedules; a five-field spec ticks
// at most once a minute, so it is reached only after two months behind.
const maxCounted = 100_000

// countTicks returns the number of ticks in (a, b).
func countTicks(tm timing, a, b time.Time) int {
	if !a.Before(b) {
		return 0
	}
	if i, ok := tm.(interval); ok {
		n := floorDiv(b.Add(-1).UnixNano(), int64(i.every)) - floorDiv(a.UnixNano(), int64(i.every))
		return int(max(n, 0))
	}
	n := 0
	for t := tm.next(a); !t.IsZero() && t.Before(b) && n < maxCounted; t = tm.next(t) {
		n++
	}
	return n
}

// tickID returns the ID of the task schedule name submits for tick: a
// UUIDv7 whose timestamp is the tick (so IDs sort by tick) and whose other
// bits are a hash of the name and the tick. Every node derives the same ID
// for the same tick, which is what lets the store admit one task per tick.
// Changing this derivation would let nodes of two versions fire a tick
// twice during a rolling upgrade.
func tickID(name string, tick time.Time) string {
	h := sha256.New()
	h.Write([]byte("dtsched/periodic/v1\x00"))
	h.Write([]byte(name))
	var b [9]byte
	binary.BigEndian.PutUint64(b[1:], uint64(tick.UnixNano()))
	h.Write(b[:])
	sum := h.Sum(nil)

	var u uuid.UUID
	ms := uint64(tick.UnixMilli()) & (1<<48 - 1)
	u[0], u[1], u[2] = byte(ms>>40), byte(ms>>32), byte(ms>>24)
	u[3], u[4], u[5] = byte(ms>>16), byte(ms>>8), byte(ms)
	copy(u[6:], sum[:10])
	u[6] = u[6]&0x0f | 0x70 // version 7
	u[8] = u[8]&0x3f | 0x80 // RFC 9562 variant
	return u.String()
}
