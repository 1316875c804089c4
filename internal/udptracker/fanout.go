package udptracker

import (
	"context"
	"sync"
	"time"
)

// remote is implemented by a Tracker whose swarm store answers from
// another process (*tracker.Tracker over the Redis store: swarm.Remote).
type remote interface{ Remote() bool }

// fanout handles the requests of one batch at once, for a worker whose
// tracker waits on a remote store. Handled one after the other, as the
// worker does with the memory store, a batch's announces would keep one
// call to Redis in flight per socket, each a round trip and a small write
// on both sides; handled at once, they are all in flight together and
// the client library (rueidis) writes them to Redis in one pipeline.
//
// It is bounded as the worker is: a batch is at most batchSize requests,
// handled by the worker and a fixed pool of goroutines (at most
// batchSize-1, started as batches first need them, each with a handler of
// its own), and the worker waits for all of them before it sends the
// answers and reads again, so nothing queues. The pool lives as long as
// the server: its goroutines end when Shutdown begins, and the worker
// then handles what they did not take itself. (Pooled, their stacks stay
// grown: a goroutine per request spent a sixth of the tracker's time
// growing its stack.) The batch has one deadline, batchDeadline after it
// was read, which the store keeps in place of its own when it is not
// later (redisswarm: one timer per batch instead of one per call), and
// the answers still leave in one send.
type fanout struct {
	w *worker
	// hs are the handlers: hs[0] the worker's own, then one per pool
	// goroutine.
	hs   []*handler
	work chan int // indexes in rx of the batch's requests
	lens [batchSize]int
	wg   sync.WaitGroup
	// ctx is the batch's, set before its requests are handed out (the
	// send on work orders it before the pool reads it).
	ctx context.Context
}

// batchDeadline bounds the store calls of one batch, all together: the
// Redis store's own deadline per call (redisswarm.Config.Timeout's
// default), so that a batch is answered within it whether Redis answers
// or hangs. A store whose deadline is shorter keeps its own.
const batchDeadline = 40 * time.Millisecond

// newFanout is the fanout for w when its tracker's store is remote, else
// nil (the worker then handles its batches in order, allocation-free).
func newFanout(w *worker) *fanout {
	if r, ok := w.s.tracker.(remote); !ok || !r.Remote() {
		return nil
	}
	f := &fanout{w: w, hs: make([]*handler, 1, batchSize), work: make(chan int, batchSize)}
	f.hs[0] = w.h
	return f
}

// answer handles the first n datagrams of w.rx at once, writes their
// answers to w.tx in the order of the requests and returns how many there
// are, as worker.answer does.
func (f *fanout) answer(ctx context.Context, n int) int {
	w := f.w
	for len(f.hs) < n {
		h := newHandler(w.s.tracker, w.s.cookies, w.s.limiter, w.s.clock, w.h.stripe, w.s.log, &w.s.private)
		f.hs = append(f.hs, h)
		go f.loop(h)
	}
	// One timer for the batch: the store uses this deadline instead of
	// setting one per call (perf: a timer per call was 29 % of the
	// node's time in a store call).
	ctx, cancel := context.WithTimeout(ctx, batchDeadline)
	f.ctx = ctx
	f.wg.Add(n)
	for i := range n {
		f.work <- i // never blocks: the channel holds a batch
	}
	// The worker takes requests too, and all that are left should the
	// pool have ended.
	for done := false; !done; {
		select {
		case i := <-f.work:
			f.serve(ctx, f.hs[0], i)
		default:
			done = true
		}
	}
	f.wg.Wait()
	cancel()
	f.ctx = nil
	out := 0
	for i := 0; i < n; i++ {
		k := f.lens[i]
		if k == 0 {
			continue
		}
		m, t := &w.rx[i], &w.tx[out]
		if out != i {
			// A request before this one got no answer: the answer moves
			// up, so that tx[:out] is what is sent.
			copy(t.Buf, w.tx[i].Buf[:k])
		}
		t.N, t.Addr, t.Scope = k, m.Addr, m.Scope
		w.ops[out] = answerOp(t.Buf[:k], m.Buf[:m.N])
		out++
	}
	// Counted before the answers leave, as worker.answer does. The pool's
	// handlers are idle until the next batch is handed out.
	for _, h := range f.hs {
		h.flush()
	}
	return out
}

// loop is one pool goroutine: it handles requests with h until Shutdown.
func (f *fanout) loop(h *handler) {
	for {
		select {
		case i := <-f.work:
			f.serve(f.ctx, h, i)
		case <-f.w.s.closed:
			return
		}
	}
}

// serve answers request i into tx[i] (handle recovers a panic: no answer).
func (f *fanout) serve(ctx context.Context, h *handler, i int) {
	m := &f.w.rx[i]
	h.sample = 0
	f.lens[i] = h.handle(ctx, m.Addr, m.Buf[:m.N], m.Truncated, f.w.tx[i].Buf)
	f.wg.Done()
}
