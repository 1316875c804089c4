package udpload

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// A burst run measures how fast a tracker drains a queue, without the
// generator competing for CPU while it does. With the tracker stopped
// (SIGSTOP to Config.ServerPID), the generator queues Config.Burst
// announces in the tracker's sockets, resumes it (SIGCONT) and sleeps
// while it answers; then it reads every answer from its own sockets'
// queues. The kernel stamps each answer as the tracker's sendmmsg delivers
// it on loopback (SO_TIMESTAMPNS), so first to last stamp is the drain
// time. On a 2-core box this is the only way to see what a second server
// socket on the second core adds: end to end, the generator needs that
// core. Linux only.

// BurstResult is one burst.
type BurstResult struct {
	Requests  int // announces queued
	Answers   int // answers read back
	Announces int // announce answers with a transaction id sent in this burst
	Errors    int // error answers (action 3)
	Bad       int // short, unknown action, or a transaction id not sent or seen twice
	// Span is the kernel time from the first to the last answer; Rate is
	// the drain rate over it, (Answers-1)/Span.
	Span time.Duration
	Rate float64
	// FromResume is from SIGCONT to the last answer: Span plus the
	// tracker's wake-up and first batch.
	FromResume time.Duration
	// ServerCPU and ServerUserCPU are the tracker's CPU time while it
	// drained (from /proc, 10 ms ticks).
	ServerCPU, ServerUserCPU time.Duration
	// OtherCPU is the CPU time every other process used meanwhile, and
	// Steal the time the hypervisor took from the VM (/proc/stat, 10 ms
	// ticks): on a shared box, what the drain had to share its cores with.
	OtherCPU, Steal time.Duration
	// Shares is each server socket's part of the queued requests, as the
	// kernel's SO_REUSEPORT hash spread them (from /proc/net/udp).
	Shares []float64
	// QueuedBytes is what the kernel charged for the queued requests.
	QueuedBytes int64
	// ServerDrops and ClientDrops are datagrams the kernel dropped on the
	// server's sockets and on the generator's (/proc/net/udp, and
	// SO_RXQ_OVFL); any makes the burst invalid. SNMPErrors is the growth
	// of the host-wide InErrors + RcvbufErrors + MemErrors of
	// /proc/net/snmp, shown only: other processes' drops count there too.
	ServerDrops, ClientDrops, SNMPErrors uint64
	// Invalid says why the burst must not be counted; empty when valid.
	Invalid string
}

// Valid reports whether the burst counts: every request answered once
// with an announce answer, nothing dropped, stamps taken on delivery.
func (r BurstResult) Valid() bool { return r.Invalid == "" }

func (r *BurstResult) check() {
	var why []string
	if r.Answers != r.Requests || r.Announces != r.Requests {
		why = append(why, fmt.Sprintf("%d requests, %d answers, %d announce answers", r.Requests, r.Answers, r.Announces))
	}
	if r.Errors != 0 || r.Bad != 0 {
		why = append(why, fmt.Sprintf("%d error and %d bad answers", r.Errors, r.Bad))
	}
	if r.ServerDrops != 0 || r.ClientDrops != 0 {
		why = append(why, fmt.Sprintf("drops: server sockets %d, client sockets %d", r.ServerDrops, r.ClientDrops))
	}
	if r.Invalid != "" {
		why = append([]string{r.Invalid}, why...)
	}
	r.Invalid = strings.Join(why, "; ")
}

// String is one line per burst.
func (r BurstResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests, %d announce answers, %d errors, %d bad; drained in %.3f s = %.0f/s (resume to last answer %.3f s)",
		r.Requests, r.Announces, r.Errors, r.Bad, r.Span.Seconds(), r.Rate, r.FromResume.Seconds())
	if r.Answers > 0 {
		fmt.Fprintf(&b, "; server CPU %.2f s (user %.2f), %.2f µs per answer",
			r.ServerCPU.Seconds(), r.ServerUserCPU.Seconds(), float64(r.ServerCPU.Microseconds())/float64(r.Answers))
	}
	fmt.Fprintf(&b, "; other processes %.2f s CPU, steal %.2f s", r.OtherCPU.Seconds(), r.Steal.Seconds())
	b.WriteString("; server sockets' shares")
	for _, s := range r.Shares {
		fmt.Fprintf(&b, " %.1f%%", 100*s)
	}
	if r.Requests > 0 {
		fmt.Fprintf(&b, " (%.0f bytes queued per request)", float64(r.QueuedBytes)/float64(r.Requests))
	}
	fmt.Fprintf(&b, "; drops: server %d, client %d (host UDP errors %d)", r.ServerDrops, r.ClientDrops, r.SNMPErrors)
	if !r.Valid() {
		fmt.Fprintf(&b, "; INVALID: %s", r.Invalid)
	}
	return b.String()
}

// BurstSummary is the median drain rate of the valid bursts after the
// first (which inserts the peers instead of updating them), and how many
// of those were valid.
func BurstSummary(rs []BurstResult) (median float64, valid, counted int) {
	warm := rs
	if len(rs) > 1 {
		warm = rs[1:]
	}
	var rates []float64
	for _, r := range warm {
		if r.Valid() {
			rates = append(rates, r.Rate)
		}
	}
	if len(rates) == 0 {
		return 0, 0, len(warm)
	}
	slices.Sort(rates)
	m := rates[len(rates)/2]
	if len(rates)%2 == 0 {
		m = (rates[len(rates)/2-1] + m) / 2
	}
	return m, len(rates), len(warm)
}

func (c *Config) checkBurst() error {
	switch {
	case c.ServerPID <= 0:
		return fmt.Errorf("a burst needs --server-pid: the tracker is paused while the burst is queued")
	case c.Burst < c.Sockets:
		return fmt.Errorf("burst of %d is smaller than the %d sockets", c.Burst, c.Sockets)
	case len(c.Targets()) != 1:
		return fmt.Errorf("a burst pauses one tracker (--server-pid): give one --addr, not %d", len(c.Targets()))
	}
	if c.Bursts < 1 {
		c.Bursts = 1
	}
	return nil
}

// newRand is socket i's random source, as in the steady run.
func newRand(seed uint64, i int) *rand.Rand { return rand.New(rand.NewPCG(seed, uint64(i))) }
