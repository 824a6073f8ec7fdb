package scheduler

import (
	"errors"
	"testing"
	"time"
	_ "time/tzdata" // the DST cases must not depend on the machine's zoneinfo

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func mustTiming(t *testing.T, spec string, loc *time.Location) timing {
	t.Helper()
	tm, _, err := parseTiming(spec, 0, loc, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	require.NoError(t, err, spec)
	return tm
}

// ticks lists the ticks of tm in (from, to].
func ticks(tm timing, from, to time.Time) []time.Time {
	var out []time.Time
	for t := tm.next(from); !t.IsZero() && !t.After(to); t = tm.next(t) {
		out = append(out, t)
	}
	return out
}

func TestTickIDIsAStableUUIDv7(t *testing.T) {
	t.Parallel()
	tick := time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)
	id := tickID("nightly-report", tick)
	// Golden value: every version of the library must derive the same ID
	// for the same tick, or nodes of two versions submit it twice during a
	// rolling upgrade.
	require.Equal(t, "019cece4-bee0-79c3-92f3-6b51b41d536e", id)
	require.NoError(t, ValidateID(id))

	u, err := uuid.Parse(id)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), u.Version())
	require.Equal(t, uuid.RFC4122, u.Variant())
	sec, nsec := u.Time().UnixTime()
	require.Equal(t, tick.UnixMilli(), sec*1000+nsec/1e6, "the UUID's timestamp is the tick")

	require.Equal(t, id, tickID("nightly-report", tick.In(mustLoc(t, "Asia/Tokyo"))), "the zone a tick is expressed in does not matter")
	require.NotEqual(t, id, tickID("nightly-report", tick.Add(time.Minute)))
	require.NotEqual(t, id, tickID("nightly-reporT", tick))
	require.NotEqual(t, id, tickID("nightly-report", tick.Add(time.Nanosecond)))
	require.Less(t, tickID("a", tick), tickID("a", tick.Add(time.Second)), "IDs sort by tick")
}

func TestIntervalTicksAlignToTheEpoch(t *testing.T) {
	t.Parallel()
	tm, loc, err := parseTiming("", 90*time.Minute, nil, time.Now())
	require.NoError(t, err)
	require.Equal(t, time.UTC, loc)
	from := time.Date(2026, 3, 14, 10, 7, 13, 5, time.UTC)
	got := ticks(tm, from, from.Add(4*time.Hour))
	require.Len(t, got, 3)
	for _, g := range got {
		require.Zero(t, g.Unix()%(90*60), "%s is a multiple of 90 minutes since the epoch", g)
	}
	// Two nodes starting at different times agree.
	require.Equal(t, tm.next(from), tm.next(from.Add(-17*time.Minute)))

	every, _, err := parseTiming("@every 10s", 0, nil, time.Now())
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 3, 14, 10, 7, 20, 0, time.UTC), every.next(from))
	require.Equal(t, time.Date(2026, 3, 14, 10, 7, 30, 0, time.UTC), every.next(time.Date(2026, 3, 14, 10, 7, 20, 0, time.UTC)), "strictly after")
}

func TestCronTimeZones(t *testing.T) {
	t.Parallel()
	from := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	berlin := mustLoc(t, "Europe/Berlin")
	want := time.Date(2026, 6, 1, 9, 0, 0, 0, berlin)
	require.True(t, mustTiming(t, "0 9 * * *", berlin).next(from).Equal(want))
	require.True(t, mustTiming(t, "CRON_TZ=Europe/Berlin 0 9 * * *", nil).next(from).Equal(want))
	require.True(t, mustTiming(t, "TZ=Europe/Berlin 0 9 * * *", nil).next(from).Equal(want))
	require.True(t, mustTiming(t, "0 9 * * *", nil).next(from).Equal(from.Add(9*time.Hour)), "UTC by default, whatever the process's zone")
	require.True(t, mustTiming(t, "@daily", berlin).next(from).Equal(time.Date(2026, 6, 2, 0, 0, 0, 0, berlin)))
}

// New York: 2026-03-08 02:00 EST jumps to 03:00 EDT; 2026-11-01 02:00 EDT
// falls back to 01:00 EST.
func TestCronDaylightSaving(t *testing.T) {
	t.Parallel()
	ny := mustLoc(t, "America/New_York")
	est := time.FixedZone("EST", -5*3600)
	edt := time.FixedZone("EDT", -4*3600)
	at := func(zone *time.Location, mo time.Month, d, h, mi int) time.Time {
		return time.Date(2026, mo, d, h, mi, 0, 0, zone)
	}
	cases := []struct {
		name     string
		spec     string
		from, to time.Time
		want     []time.Time
	}{
		{
			"daily 02:30 runs at 03:00 when spring-forward skips it",
			"30 2 * * *", at(ny, 3, 6, 12, 0), at(ny, 3, 10, 0, 0),
			[]time.Time{at(est, 3, 7, 2, 30), at(edt, 3, 8, 3, 0), at(edt, 3, 9, 2, 30)},
		},
		{
			"daily 02:30 runs once on the fall-back day",
			"30 2 * * *", at(ny, 10, 30, 12, 0), at(ny, 11, 3, 0, 0),
			[]time.Time{at(edt, 10, 31, 2, 30), at(est, 11, 1, 2, 30), at(est, 11, 2, 2, 30)},
		},
		{
			"daily 01:30 runs at its first occurrence only when fall-back repeats it",
			"30 1 * * *", at(ny, 10, 30, 12, 0), at(ny, 11, 3, 0, 0),
			[]time.Time{at(edt, 10, 31, 1, 30), at(edt, 11, 1, 1, 30), at(est, 11, 2, 1, 30)},
		},
		{
			"daily 01:30 is untouched by spring-forward",
			"30 1 * * *", at(ny, 3, 7, 12, 0), at(ny, 3, 9, 12, 0),
			[]time.Time{at(est, 3, 8, 1, 30), at(edt, 3, 9, 1, 30)},
		},
		{
			"several skipped times run once, at the end of the gap",
			"*/20 2 * * *", at(ny, 3, 8, 0, 0), at(ny, 3, 8, 12, 0),
			[]time.Time{at(edt, 3, 8, 3, 0)},
		},
		{
			"hourly jobs keep to real time: no 02:00 on spring-forward",
			"0 * * * *", at(est, 3, 8, 0, 30), at(edt, 3, 8, 4, 30),
			[]time.Time{at(est, 3, 8, 1, 0), at(edt, 3, 8, 3, 0), at(edt, 3, 8, 4, 0)},
		},
		{
			"hourly jobs keep to real time: both 01:00s on fall-back",
			"0 * * * *", at(edt, 11, 1, 0, 30), at(est, 11, 1, 2, 30),
			[]time.Time{at(edt, 11, 1, 1, 0), at(est, 11, 1, 1, 0), at(est, 11, 1, 2, 0)},
		},
		{
			"a minutely job in a named hour runs through the first 01:xx only",
			"*/20 1 * * *", at(edt, 11, 1, 0, 30), at(est, 11, 1, 3, 0),
			[]time.Time{at(edt, 11, 1, 1, 0), at(edt, 11, 1, 1, 20), at(edt, 11, 1, 1, 40)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := ticks(mustTiming(t, tc.spec, ny), tc.from, tc.to)
			require.Len(t, got, len(tc.want), "got %v", got)
			for i := range got {
				require.True(t, tc.want[i].Equal(got[i]), "tick %d: want %s, got %s", i, tc.want[i], got[i])
			}
		})
	}

	// next from inside the repeated hour (a node starting then) skips what
	// the first copy of the hour already fired.
	daily := mustTiming(t, "30 1 * * *", ny)
	require.True(t, daily.next(at(est, 11, 1, 1, 10)).Equal(at(est, 11, 2, 1, 30)))
}

func TestLatestAndCountTicks(t *testing.T) {
	t.Parallel()
	ny := mustLoc(t, "America/New_York")
	for _, tm := range []timing{mustTiming(t, "*/5 * * * *", nil), mustTiming(t, "30 2 * * *", ny), mustTiming(t, "@every 5m", nil)} {
		now := time.Date(2026, 3, 8, 9, 17, 0, 0, time.UTC)
		all := ticks(tm, now.Add(-72*time.Hour), now)
		last := all[len(all)-1]
		require.True(t, latestTick(tm, now, 72*time.Hour).Equal(last))
		require.True(t, latestTick(tm, last, time.Hour).Equal(last), "a tick at t counts as at or before t")
		require.True(t, latestTick(tm, last.Add(-1), 72*time.Hour).Equal(all[len(all)-2]))
		require.True(t, latestTick(tm, now, now.Sub(last)).IsZero(), "the window is open at its start")
		require.Equal(t, len(all)-2, countTicks(tm, all[0], last), "ticks strictly between")
		require.Zero(t, countTicks(tm, last, last))
	}
}

func TestParseTimingRejects(t *testing.T) {
	t.Parallel()
	ny := mustLoc(t, "America/New_York")
	cases := []struct {
		spec  string
		every time.Duration
		loc   *time.Location
		field string
	}{
		{"", 0, nil, "spec"},
		{"* * * * *", time.Minute, nil, "spec"},
		{"61 * * * *", 0, nil, "spec"},
		{"* * * *", 0, nil, "spec"},
		{"0 0 * * * *", 0, nil, "spec"}, // six fields: seconds are not standard
		{"@fortnightly", 0, nil, "spec"},
		{"0 0 30 2 *", 0, nil, "spec"}, // never fires
		{"CRON_TZ=Mars/Olympus 0 9 * * *", 0, nil, "spec"},
		{"CRON_TZ=Local 0 9 * * *", 0, nil, "spec"},
		{"0 9 * * *", 0, time.Local, "location"},
		{"CRON_TZ=Europe/Berlin 0 9 * * *", 0, ny, "location"},
		{"@every 10x", 0, nil, "spec"},
		{"@every 500ms", 0, nil, "every"},
		{"@every 1h", 0, ny, "location"},
		{"CRON_TZ=Europe/Berlin @every 1h", 0, nil, "spec"},
		{"", 10 * time.Millisecond, nil, "every"},
		{"", time.Hour, ny, "location"},
	}
	for _, tc := range cases {
		_, _, err := parseTiming(tc.spec, tc.every, tc.loc, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		var se *ScheduleError
		require.True(t, errors.As(err, &se), "%q %s: %v", tc.spec, tc.every, err)
		require.Equal(t, tc.field, se.Field, "%q %s: %v", tc.spec, tc.every, err)
	}
}

// São Paulo's 2018 spring-forward skipped midnight (00:00 became 01:00):
// a midnight job runs at 01:00 that day instead of skipping it.
func TestCronMidnightGap(t *testing.T) {
	t.Parallel()
	sp := mustLoc(t, "America/Sao_Paulo")
	got := ticks(mustTiming(t, "0 0 * * *", sp), time.Date(2018, 11, 3, 12, 0, 0, 0, sp), time.Date(2018, 11, 5, 12, 0, 0, 0, sp))
	require.Len(t, got, 2, "%v", got)
	require.True(t, got[0].Equal(time.Date(2018, 11, 4, 3, 0, 0, 0, time.UTC)), "%s: 01:00 -02 on the day midnight did not exist", got[0])
	require.True(t, got[1].Equal(time.Date(2018, 11, 5, 2, 0, 0, 0, time.UTC)), "%s", got[1])
}

// The loop calls next for every schedule each round, and latestTick once
// per schedule when it starts (over a year, to find Last).
func BenchmarkTiming(b *testing.B) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		spec string
		loc  *time.Location
	}{
		{"utc-minutely", "* * * * *", nil},
		{"ny-daily", "30 2 * * *", ny},
		{"ny-hourly", "0 * * * *", ny},
		{"interval", "@every 10s", nil},
	} {
		tm, _, err := parseTiming(c.spec, 0, c.loc, now)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/next", func(b *testing.B) {
			for b.Loop() {
				tm.next(now)
			}
		})
		b.Run(c.name+"/latest-in-a-year", func(b *testing.B) {
			for b.Loop() {
				latestTick(tm, now, lastLookupWindow)
			}
		})
	}
}

// A spec running every hour of particular days keeps those days whole when
// the day's midnight does not exist (Beirut, 2026-03-29: 00:00 jumps to
// 01:00): it fires at 01:00 through 23:00.
func TestCronHourlyOnADayWithoutMidnight(t *testing.T) {
	t.Parallel()
	beirut := mustLoc(t, "Asia/Beirut")
	got := ticks(mustTiming(t, "0 * * * 0", beirut), time.Date(2026, 3, 28, 22, 0, 0, 0, beirut), time.Date(2026, 3, 30, 0, 0, 0, 0, beirut))
	require.Len(t, got, 23, "%v", got)
	for i, g := range got {
		require.True(t, g.Equal(time.Date(2026, 3, 29, i+1, 0, 0, 0, beirut)), "tick %d: %s", i, g)
	}
	// latestTick agrees: a node starting in the middle of that Sunday finds
	// the tick of its hour.
	l := latestTick(mustTiming(t, "0 * * * 0", beirut), time.Date(2026, 3, 29, 5, 30, 0, 0, beirut), time.Hour)
	require.True(t, l.Equal(time.Date(2026, 3, 29, 5, 0, 0, 0, beirut)), "%s", l)
}
