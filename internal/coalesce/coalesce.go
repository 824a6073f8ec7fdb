// Package coalesce runs concurrent calls of one operation as batches
// ("group commit"), without a background goroutine.
//
// A call that finds fewer than MaxInFlight batches running runs at once,
// as a batch of its own plus whatever calls are waiting; otherwise it
// waits. When a batch ends and calls are waiting, the batch's runner hands
// the next batch to the first of them, which runs it in its own goroutine.
// So a lone caller never waits, and under load batches grow to whatever
// accumulated while the previous ones ran: one round trip carries many
// calls, and no timer adds latency.
package coalesce

import (
	"context"
	"fmt"
	"sync"
)

// Group batches the calls of one operation. The zero value is not usable;
// set Run, MaxBatch and MaxInFlight.
type Group[Req, Res any] struct {
	// Run performs a batch and returns one result per request, in order, or
	// an error for the whole batch. ctx carries the values of the first
	// call's context and ends when every call's context has ended.
	Run func(ctx context.Context, reqs []Req) ([]Res, error)
	// MaxBatch bounds the requests of one batch.
	MaxBatch int
	// MaxInFlight bounds the batches running at once.
	MaxInFlight int

	mu       sync.Mutex
	queue    []*call[Req, Res]
	inFlight int
}

type call[Req, Res any] struct {
	ctx context.Context
	req Req
	res Res
	err error
	// wake, only for a call that waits, receives the batch the call must
	// run or, once res and err are set, nil. A call gets exactly one of the
	// two: a call taken into a batch is never chosen to lead another.
	wake  chan []*call[Req, Res]
	taken bool // in a batch (guarded by Group.mu)
}

// Do runs req in a batch and returns its result. If ctx ends while the
// call still waits for a batch, Do returns ctx.Err() and req is never run;
// once its batch has started, Do waits for the batch's outcome.
func (g *Group[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	c := &call[Req, Res]{ctx: ctx, req: req}
	g.mu.Lock()
	if g.inFlight < g.MaxInFlight {
		g.inFlight++
		g.queue = append(g.queue, c)
		batch := g.takeLocked()
		g.mu.Unlock()
		g.runAndHandOff(batch)
		return c.res, c.err
	}
	c.wake = make(chan []*call[Req, Res], 1)
	g.queue = append(g.queue, c)
	g.mu.Unlock()
	var batch []*call[Req, Res]
	select {
	case batch = <-c.wake:
	case <-ctx.Done():
		if g.withdraw(c) {
			var zero Res
			return zero, ctx.Err()
		}
		batch = <-c.wake // taken meanwhile: the batch runs, maybe by this call
	}
	if batch != nil {
		g.runAndHandOff(batch)
	}
	return c.res, c.err
}

// withdraw takes c out of the queue unless a batch took it already, and
// reports whether it did.
func (g *Group[Req, Res]) withdraw(c *call[Req, Res]) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.taken {
		return false
	}
	for i, q := range g.queue {
		if q == c {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			break
		}
	}
	return true
}

// takeLocked removes the next batch from the queue.
func (g *Group[Req, Res]) takeLocked() []*call[Req, Res] {
	n := min(len(g.queue), max(g.MaxBatch, 1))
	batch := make([]*call[Req, Res], n)
	copy(batch, g.queue[:n])
	clear(g.queue[:n])
	g.queue = g.queue[n:]
	if len(g.queue) == 0 {
		g.queue = nil
	}
	for _, c := range batch {
		c.taken = true
	}
	return batch
}

// runAndHandOff runs batch, then hands its slot on.
func (g *Group[Req, Res]) runAndHandOff(batch []*call[Req, Res]) {
	g.run(batch)
	g.handOff()
}

// handOff gives the slot of a batch that ended to the next batch, if calls
// wait, by handing that batch to the first of them; else frees the slot.
func (g *Group[Req, Res]) handOff() {
	g.mu.Lock()
	if len(g.queue) == 0 {
		g.inFlight--
		g.mu.Unlock()
		return
	}
	next := g.takeLocked()
	g.mu.Unlock()
	next[0].wake <- next
}

func (g *Group[Req, Res]) run(batch []*call[Req, Res]) {
	ctx, stop := batchContext(batch)
	reqs := make([]Req, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	var res []Res
	var err error
	func() {
		// A panicking Run fails the whole batch instead of leaving its
		// other calls waiting forever; the panic goes on in this call.
		defer func() {
			if v := recover(); v != nil {
				stop()
				for _, c := range batch {
					c.err = fmt.Errorf("coalesce: batch panicked: %v", v)
					c.done()
				}
				g.handOff()
				panic(v)
			}
		}()
		res, err = g.Run(ctx, reqs)
	}()
	stop()
	if err == nil && len(res) != len(reqs) {
		err = fmt.Errorf("coalesce: %d results for %d requests", len(res), len(reqs))
	}
	for i, c := range batch {
		if err != nil {
			c.err = err
		} else {
			c.res = res[i]
		}
		c.done()
	}
}

// done tells the caller, if it waits, that res and err are set; the
// leader of a batch, which does not wait, has no wake channel. The
// caller reads res and err after this, so done is the last touch of c.
func (c *call[Req, Res]) done() {
	if c.wake != nil {
		c.wake <- nil
	}
}

// batchContext returns a context with the first call's values that ends
// when every call's context has ended.
func batchContext[Req, Res any](batch []*call[Req, Res]) (context.Context, func()) {
	same := true
	for _, c := range batch[1:] {
		if c.ctx != batch[0].ctx {
			same = false
			break
		}
	}
	if same {
		return batch[0].ctx, func() {} // one context: it is the batch's
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(batch[0].ctx))
	var mu sync.Mutex
	left := len(batch)
	stops := make([]func() bool, 0, len(batch))
	for _, c := range batch {
		if c.ctx.Done() == nil {
			// Never ends: neither does the batch.
			for _, s := range stops {
				s()
			}
			return ctx, cancel
		}
		stops = append(stops, context.AfterFunc(c.ctx, func() {
			mu.Lock()
			left--
			last := left == 0
			mu.Unlock()
			if last {
				cancel()
			}
		}))
	}
	return ctx, func() {
		for _, s := range stops {
			s()
		}
		cancel()
	}
}
