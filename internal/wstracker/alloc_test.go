package wstracker

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/starling-tracker/starling/internal/tracker"
)

// discard is a socket that takes every write.
type discard struct{ net.Conn }

func (discard) Write(p []byte) (int, error)      { return len(p), nil }
func (discard) SetWriteDeadline(time.Time) error { return nil }

// The relay path allocates nothing in steady state: an announce with five
// offers read, its peers picked, its answer and offers built and queued,
// an answer read and relayed, the frames written.
func TestRelayPathAllocs(t *testing.T) {
	r := newRules(t, tracker.DefaultConfig())
	srv, err := New(Config{}, r, r.counters, nil)
	if err != nil {
		t.Fatal(err)
	}
	newConn := func() *conn {
		c := &conn{srv: srv, nc: discard{}, ip: netip.MustParseAddr("127.0.0.1"), stripe: srv.counters.Stripe()}
		c.flushFn = c.flush
		return c
	}
	h := id{1}
	a := newConn()
	// a and five peers: each offer of a's goes to one of them.
	peers := make([]*conn, 5)
	for i := range peers {
		peers[i] = newConn()
		peers[i].out1 = make([]byte, 0, msgBufSize)
		peers[i].handle(context.Background(), []byte(announceJSON(h, id{'p', byte(i)}, `,"left":1`)))
	}
	sdp := `{"type":"offer","sdp":"` + strings.Repeat("s", 400) + `"}`
	var offers []string
	offerIDs := make([]id, 5)
	for i := range offerIDs {
		offerIDs[i] = id{byte(i), 0x80, '"'}
		offers = append(offers, `{"offer":`+sdp+`,"offer_id":`+jsonID(offerIDs[i])+`}`)
	}
	ann := []byte(announceJSON(h, id{'a'}, `,"left":1000,"numwant":5,"offers":[`+strings.Join(offers, ",")+`]`))
	// answers[p][o] is peer p's answer to offer o.
	var answers [5][5][]byte
	for p := range answers {
		for o := range answers[p] {
			answers[p][o] = []byte(answerJSON(h, id{'p', byte(p)}, id{'a'}, offerIDs[o]))
		}
	}
	a.out1 = make([]byte, 0, msgBufSize)
	ctx := context.Background()
	sh := srv.reg.shard(&h)
	var pending [5]offerKey
	n := testing.AllocsPerRun(200, func() {
		a.handle(ctx, ann)
		sh.mu.Lock()
		k := 0
		for key := range sh.swarms[h].offers {
			pending[k] = key
			k++
		}
		sh.mu.Unlock()
		if k != 5 {
			t.Fatalf("%d offers pending", k)
		}
		for _, key := range pending {
			p, o := key.to[1], key.offer[0]
			peers[p].handle(ctx, answers[p][o])
		}
		srv.wg.Wait() // the writers, so their buffers go back to the pool
	})
	if n > 0 && !raceEnabled {
		t.Errorf("an announce with 5 offers and their answers: %.1f allocations, want 0", n)
	}
	if n := a.pending.Load(); n != 0 {
		t.Fatalf("%d offers left unanswered: the answers were refused", n)
	}
}
