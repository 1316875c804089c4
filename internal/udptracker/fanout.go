package udptracker

import (
	"context"
	"sync"
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
// each runs on its own goroutine with a handler of its own (made when a
// batch first needs it, then kept), and the worker waits for all of them
// before it sends the answers and reads again, so no goroutine outlives
// its batch and nothing queues. Each request keeps its deadline (the
// store's, 50 ms an announce), and the answers still leave in one send.
type fanout struct {
	w *worker
	// hs[i] handles the batch's request i (hs[0] is the worker's own).
	hs   []*handler
	lens [batchSize]int
	wg   sync.WaitGroup
}

// newFanout is the fanout for w when its tracker's store is remote, else
// nil (the worker then handles its batches in order, allocation-free).
func newFanout(w *worker) *fanout {
	if r, ok := w.s.tracker.(remote); !ok || !r.Remote() {
		return nil
	}
	f := &fanout{w: w, hs: make([]*handler, 1, batchSize)}
	f.hs[0] = w.h
	return f
}

// handler is the handler of request i, made on first use.
func (f *fanout) handler(i int) *handler {
	for len(f.hs) <= i {
		w := f.w
		f.hs = append(f.hs, newHandler(w.s.tracker, w.s.cookies, w.s.limiter, w.s.clock, w.h.stripe, w.s.log, &w.s.private))
	}
	return f.hs[i]
}

// answer handles the first n datagrams of w.rx at once, writes their
// answers to w.tx in the order of the requests and returns how many there
// are, as worker.answer does.
func (f *fanout) answer(ctx context.Context, n int) int {
	w := f.w
	for i := 1; i < n; i++ {
		h := f.handler(i)
		f.wg.Add(1)
		go f.serve(ctx, h, i)
	}
	f.serve1(ctx, f.hs[0], 0)
	f.wg.Wait()
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
		w.ops[out] = answerOp(t.Buf[:k])
		out++
	}
	// Counted before the answers leave, as worker.answer does.
	for _, h := range f.hs[:min(n, len(f.hs))] {
		h.flush()
	}
	return out
}

func (f *fanout) serve(ctx context.Context, h *handler, i int) {
	defer f.wg.Done()
	f.serve1(ctx, h, i)
}

// serve1 answers request i into tx[i] (handle recovers a panic: no answer).
func (f *fanout) serve1(ctx context.Context, h *handler, i int) {
	m := &f.w.rx[i]
	h.sample = 0
	f.lens[i] = h.handle(ctx, m.Addr, m.Buf[:m.N], m.Truncated, f.w.tx[i].Buf)
}
