//go:build linux

package udpload

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

// rawSocket is one generator socket kept out of Go's network poller: while
// the tracker drains, nothing in the generator wakes up for the answers
// piling up in its queues (a polled socket would wake a thread for every
// batch, on the cores the tracker is supposed to have to itself).
type rawSocket struct {
	fd    int
	inode uint64
	c     *client // builds the requests; its txid restarts at 0 each burst
	n     int     // requests sent in this burst: transaction ids 1..n
	seen  []uint64
	ovfl  uint32 // last SO_RXQ_OVFL count seen
}

// answerRoom is the receive buffer asked for per expected answer: a
// 200-byte loopback datagram is charged about 1 KiB (the kernel doubles
// what is asked for, so this leaves room for 4 KiB).
const answerRoom = 2048

// RunBurst runs cfg.Bursts bursts of cfg.Burst announces against the
// tracker at cfg.Addr, process cfg.ServerPID, and reports each to progress
// as it ends. The tracker is always resumed before RunBurst returns.
func RunBurst(ctx context.Context, cfg Config, progress io.Writer) ([]BurstResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if err := cfg.checkBurst(); err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp4", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("burst: resolve %s (IPv4 only): %w", cfg.Addr, err)
	}
	target := ua.AddrPort()
	target = netip.AddrPortFrom(target.Addr().Unmap(), target.Port())
	pop := newPopulation(&cfg)
	perSocket := (cfg.Burst + cfg.Sockets - 1) / cfg.Sockets
	socks := make([]*rawSocket, 0, cfg.Sockets)
	defer func() {
		for _, s := range socks {
			unix.Close(s.fd)
		}
	}()
	for i := 0; i < cfg.Sockets; i++ {
		s, err := openRaw(&cfg, i, target, pop, perSocket)
		if err != nil {
			return nil, err
		}
		socks = append(socks, s)
	}
	// Never leave the tracker stopped, whatever happens below.
	defer syscall.Kill(cfg.ServerPID, syscall.SIGCONT)
	var res []BurstResult
	for i := 0; i < cfg.Bursts; i++ {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		r, err := burstOnce(ctx, &cfg, target, socks)
		if err != nil {
			return res, fmt.Errorf("burst %d: %w", i+1, err)
		}
		fmt.Fprintf(progress, "burst %d: %s\n", i+1, r)
		res = append(res, r)
	}
	return res, nil
}

func openRaw(cfg *Config, i int, target netip.AddrPort, pop *population, perSocket int) (*rawSocket, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("burst: socket %d: %w", i, err)
	}
	s := &rawSocket{fd: fd, seen: make([]uint64, (perSocket+63)/64)}
	fail := func(what string, err error) (*rawSocket, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("burst: socket %d: %s: %w", i, what, err)
	}
	if target.Addr().IsLoopback() {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, byte(1 + i%cfg.SourceIPs)}}); err != nil {
			return fail("bind", err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: target.Addr().As4(), Port: int(target.Port())}); err != nil {
		return fail("connect", err)
	}
	for _, opt := range []int{unix.SO_TIMESTAMPNS, unix.SO_RXQ_OVFL} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1); err != nil {
			return fail("timestamps and drop counter", err)
		}
	}
	// The whole burst's answers wait in the queue until the tracker is
	// done: the buffer must hold them. SO_RCVBUFFORCE passes
	// net.core.rmem_max when running as root.
	need := perSocket*answerRoom + 64<<10
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, need)
	if got, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); got < need {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, need)
	}
	if got, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); got < need {
		return fail("receive buffer", fmt.Errorf("got %d bytes, need %d: raise net.core.rmem_max or run as root", got, need))
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}); err != nil {
		return fail("receive timeout", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail("stat", err)
	}
	s.inode = st.Ino
	s.c = &client{cfg: cfg, rng: newRand(cfg.Seed, i), pop: pop, index: i}
	s.c.torrent = torrentPicker(cfg, s.c.rng)
	return s, nil
}

// connect gets a connection id over the raw socket.
func (s *rawSocket) connect(ctx context.Context, addr string) error {
	var req [16]byte
	binary.BigEndian.PutUint64(req[0:], protocolID)
	binary.BigEndian.PutUint32(req[8:], actionConnect)
	var buf [2048]byte
	for attempt := 0; attempt < 10 && ctx.Err() == nil; attempt++ {
		s.c.txid++
		binary.BigEndian.PutUint32(req[12:], s.c.txid|1<<31)
		if _, err := unix.Write(s.fd, req[:]); err != nil {
			return fmt.Errorf("send connect: %w", err)
		}
		for {
			n, err := unix.Read(s.fd, buf[:])
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				break // timed out: resend
			}
			if errors.Is(err, unix.ECONNREFUSED) {
				time.Sleep(100 * time.Millisecond)
				break
			}
			if err != nil {
				return fmt.Errorf("connect to %s: %w", addr, err)
			}
			if n >= 16 && binary.BigEndian.Uint32(buf[0:]) == actionConnect && string(buf[4:8]) == string(req[12:16]) {
				s.c.cid = binary.BigEndian.Uint64(buf[8:])
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("connect to %s: no answer after 10 tries (is the tracker running?)", addr)
}

// discard empties the socket's queue.
func (s *rawSocket) discard() {
	var buf [2048]byte
	for {
		if _, _, err := unix.Recvfrom(s.fd, buf[:], unix.MSG_DONTWAIT); err != nil {
			return
		}
	}
}

func burstOnce(ctx context.Context, cfg *Config, target netip.AddrPort, socks []*rawSocket) (BurstResult, error) {
	var r BurstResult
	pid := cfg.ServerPID
	clients := make(map[uint64]bool, len(socks))
	for _, s := range socks {
		if err := s.connect(ctx, cfg.Addr); err != nil {
			return r, err
		}
		s.discard()
		clients[s.inode] = true
	}

	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return r, fmt.Errorf("stop the server: %w", err)
	}
	if err := waitStopped(pid); err != nil {
		return r, err
	}
	before, err := readUDPTable(target.Port(), clients)
	if err != nil {
		return r, err
	}
	if before.serverQueued() != 0 {
		return r, fmt.Errorf("the server's sockets hold %d bytes before the burst", before.serverQueued())
	}
	snmp0, err := snmpUDPErrors()
	if err != nil {
		return r, err
	}

	// Queue the burst: the kernel delivers each datagram into the stopped
	// server's socket inside our send call.
	var m batch.Message
	m.Buf = make([]byte, 16+20*74)
	saved := cfg.ScrapeShare
	cfg.ScrapeShare = 0 // announces only
	defer func() { cfg.ScrapeShare = saved }()
	for i, s := range socks {
		s.n = cfg.Burst / len(socks)
		if i < cfg.Burst%len(socks) {
			s.n++
		}
		s.c.txid = 0
		clear(s.seen)
		for j := 0; j < s.n; j++ {
			s.c.fill(&m)
			if _, err := unix.Write(s.fd, m.Buf[:m.N]); err != nil {
				return r, fmt.Errorf("send: %w", err)
			}
		}
		r.Requests += s.n
	}
	queued, err := readUDPTable(target.Port(), clients)
	if err != nil {
		return r, err
	}
	r.QueuedBytes = queued.serverQueued()
	for _, q := range queued.serverQ {
		r.Shares = append(r.Shares, float64(q)/float64(max(r.QueuedBytes, 1)))
	}

	cpu0, user0, err := processCPU(pid)
	if err != nil {
		return r, err
	}
	busy0, steal0, err := hostCPU()
	if err != nil {
		return r, err
	}
	resumeAt := time.Now()
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		return r, fmt.Errorf("resume the server: %w", err)
	}
	// Sleep while the server drains; look at the queues every 100 ms
	// (reading /proc/net/udp takes well under a millisecond). Done when
	// the server's queues are empty and ours stopped growing.
	var after udpTable
	prevClient := int64(-1)
	for deadline := resumeAt.Add(2 * time.Minute); ; {
		time.Sleep(100 * time.Millisecond)
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if after, err = readUDPTable(target.Port(), clients); err != nil {
			return r, err
		}
		if after.serverQueued() == 0 && after.clientQueued == prevClient {
			break
		}
		prevClient = after.clientQueued
		if after.serverQueued() != 0 {
			prevClient = -1
		}
		if time.Now().After(deadline) {
			return r, errors.New("the server did not drain its queues within 2 minutes")
		}
	}
	cpu1, user1, err := processCPU(pid)
	if err != nil {
		return r, err
	}
	r.ServerCPU, r.ServerUserCPU = cpu1-cpu0, user1-user0
	busy1, steal1, err := hostCPU()
	if err != nil {
		return r, err
	}
	r.OtherCPU, r.Steal = busy1-busy0-r.ServerCPU, steal1-steal0
	readAt := time.Now()
	snmp1, err := snmpUDPErrors()
	if err != nil {
		return r, err
	}
	r.SNMPErrors = snmp1 - snmp0
	r.ServerDrops = after.serverDrops - before.serverDrops

	first, last, stamped := int64(1<<63-1), int64(0), 0
	buf := make([]byte, 2048)
	oob := make([]byte, unix.CmsgSpace(16)+unix.CmsgSpace(4))
	for _, s := range socks {
		ovfl := s.ovfl
		for {
			n, oobn, _, _, err := unix.Recvmsg(s.fd, buf, oob, unix.MSG_DONTWAIT)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) {
					break
				}
				return r, fmt.Errorf("read answers: %w", err)
			}
			r.Answers++
			ts, drops, ok := parseCmsgs(oob[:oobn])
			if ok {
				stamped++
				first, last = min(first, ts), max(last, ts)
			}
			ovfl = max(ovfl, drops)
			r.classify(s, buf[:n])
		}
		r.ClientDrops += uint64(ovfl - s.ovfl)
		s.ovfl = ovfl
	}
	// SO_RXQ_OVFL misses drops after the last datagram queued.
	r.ClientDrops = max(r.ClientDrops, after.clientDrops-before.clientDrops)
	if stamped != r.Answers {
		r.Invalid = fmt.Sprintf("%d of %d answers without a kernel timestamp", r.Answers-stamped, r.Answers)
	} else if r.Answers > 0 && (first < resumeAt.UnixNano() || last > readAt.UnixNano()) {
		// A datagram not stamped on delivery is stamped when read.
		r.Invalid = "answer timestamps outside the drain (not stamped on delivery)"
	}
	if r.Answers > 0 {
		r.Span = time.Duration(last - first)
		r.FromResume = time.Duration(last - resumeAt.UnixNano())
		if r.Span > 0 {
			r.Rate = float64(r.Answers-1) / r.Span.Seconds()
		}
	}
	r.check()
	return r, nil
}

// classify counts one answer: an announce answer must carry a transaction
// id of this burst not seen before.
func (r *BurstResult) classify(s *rawSocket, b []byte) {
	if len(b) < 8 {
		r.Bad++
		return
	}
	switch binary.BigEndian.Uint32(b) {
	case actionAnnounce:
		tx := int(binary.BigEndian.Uint32(b[4:]))
		if len(b) < 20 || tx < 1 || tx > s.n || s.seen[(tx-1)/64]&(1<<((tx-1)%64)) != 0 {
			r.Bad++
			return
		}
		s.seen[(tx-1)/64] |= 1 << ((tx - 1) % 64)
		r.Announces++
	case actionError:
		r.Errors++
	default:
		r.Bad++
	}
}

// parseCmsgs finds the receive timestamp (ns since the epoch) and the
// socket's cumulative drop count in a datagram's control messages.
func parseCmsgs(b []byte) (ts int64, drops uint32, ok bool) {
	msgs, err := unix.ParseSocketControlMessage(b)
	if err != nil {
		return 0, 0, false
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET {
			continue
		}
		switch {
		case m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16:
			sec := int64(binary.NativeEndian.Uint64(m.Data))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			ts, ok = sec*1e9+nsec, true
		case m.Header.Type == unix.SO_RXQ_OVFL && len(m.Data) >= 4:
			drops = binary.NativeEndian.Uint32(m.Data)
		}
	}
	return ts, drops, ok
}

// waitStopped waits until every thread of pid is stopped.
func waitStopped(pid int) error {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	for deadline := time.Now().Add(2 * time.Second); ; {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("server threads: %w", err)
		}
		stopped := 0
		for _, t := range tasks {
			b, err := os.ReadFile(dir + "/" + t.Name() + "/stat")
			if err != nil {
				continue // thread gone
			}
			if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) && (b[i+2] == 'T' || b[i+2] == 't') {
				stopped++
			}
		}
		if stopped == len(tasks) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("server %d not stopped after SIGSTOP (%d of %d threads)", pid, stopped, len(tasks))
		}
		time.Sleep(time.Millisecond)
	}
}

// udpTable is what /proc/net/udp says about the server's sockets (those
// bound to the target port, not ours) and ours.
type udpTable struct {
	serverQ      []int64 // bytes queued per server socket, by inode
	serverDrops  uint64
	clientQueued int64
	clientDrops  uint64
}

func (t udpTable) serverQueued() int64 {
	var n int64
	for _, q := range t.serverQ {
		n += q
	}
	return n
}

func readUDPTable(port uint16, clients map[uint64]bool) (udpTable, error) {
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return udpTable{}, err
	}
	defer f.Close()
	return parseUDPTable(f, port, clients)
}

func parseUDPTable(rd io.Reader, port uint16, clients map[uint64]bool) (udpTable, error) {
	type server struct {
		inode uint64
		q     int64
	}
	var t udpTable
	var servers []server
	sc := bufio.NewScanner(rd)
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 13 {
			continue
		}
		inode, err1 := strconv.ParseUint(f[9], 10, 64)
		_, rx, _ := strings.Cut(f[4], ":")
		q, err2 := strconv.ParseInt(rx, 16, 64)
		drops, err3 := strconv.ParseUint(f[12], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return t, fmt.Errorf("/proc/net/udp: unexpected line %q", sc.Text())
		}
		if clients[inode] {
			t.clientQueued += q
			t.clientDrops += drops
			continue
		}
		_, lport, _ := strings.Cut(f[1], ":")
		if p, err := strconv.ParseUint(lport, 16, 16); err == nil && uint16(p) == port {
			servers = append(servers, server{inode, q})
			t.serverDrops += drops
		}
	}
	if err := sc.Err(); err != nil {
		return t, err
	}
	slices.SortFunc(servers, func(a, b server) int { return cmp.Compare(a.inode, b.inode) })
	for _, s := range servers {
		t.serverQ = append(t.serverQ, s.q)
	}
	return t, nil
}

// hostCPU is the CPU time all processes used (user, nice, system, irq,
// softirq) and the time the hypervisor took (steal), from /proc/stat.
func hostCPU() (busy, steal time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("/proc/stat: unexpected format")
	}
	var v [8]uint64
	for i := range v {
		v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	// user nice system idle iowait irq softirq steal, in USER_HZ (100).
	tick := 10 * time.Millisecond
	return time.Duration(v[0]+v[1]+v[2]+v[5]+v[6]) * tick, time.Duration(v[7]) * tick, nil
}

// snmpUDPErrors is InErrors + RcvbufErrors + MemErrors of /proc/net/snmp's
// Udp line: datagrams the kernel dropped anywhere on the host.
func snmpUDPErrors() (uint64, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, err
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		var sum uint64
		for i, name := range names {
			if i < len(f) && (name == "InErrors" || name == "RcvbufErrors" || name == "MemErrors") {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				sum += v
			}
		}
		return sum, nil
	}
	return 0, errors.New("/proc/net/snmp: no Udp counters")
}
