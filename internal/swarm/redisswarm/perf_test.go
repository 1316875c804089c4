package redisswarm

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/swarm/swarmtest"
)

// TestUniformProfile measures issue 17's two Redis targets on the uniform
// profile (10,000 torrents of 20 IPv4 peers, half seeders) on a private
// redis-server: memory per peer (INFO memory before and after the load)
// and Redis's time per announce (INFO commandstats, evalsha
// usec_per_call) for compact re-announces at numwant 50 from 64
// goroutines. It takes about half a minute, so it runs only with
// STARLING_REDIS_PROFILE=1.
func TestUniformProfile(t *testing.T) {
	if os.Getenv("STARLING_REDIS_PROFILE") == "" {
		t.Skip("STARLING_REDIS_PROFILE is not set")
	}
	r := startRedis(t, 0)
	pin(t, r)
	c := rawClient(t, r.url())
	torrents := profileTorrents()
	const peers, workers, rounds = 20, 64, 100000
	for _, mode := range []bool{false, true} {
		c.Do(context.Background(), c.B().Flushall().Build())
		s := newTestStore(t, Config{URL: r.url(), Prefix: "starling:", NoPeerDetail: mode, Timeout: 5 * time.Second})
		announceTimed(s, 0) // scripts loaded, one bucket warm
		before := usedMemory(t, c)
		loadUniform(t, s, torrents, peers, workers)
		per := float64(usedMemory(t, c)-before) / float64(torrents*peers)
		c.Do(context.Background(), c.B().ConfigResetstat().Build())
		cpu := cpuSeconds(t, c)
		start := time.Now()
		parallel(t, workers, rounds, func(i int) error {
			k := (i * 7919) % (torrents * peers)
			tor, p := k%torrents, k/torrents
			a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(p), swarmtest.Addr4(tor*peers+p, 6881), 0)
			a.NumWant, a.Left, a.Compact = 50, int64(p%2), true
			var resp bittorrent.AnnounceResponse
			_, err := s.Announce(context.Background(), &a, &resp)
			// Torrent 1 holds announceTimed's peer too.
			if err == nil && tor != 1 && len(resp.Compact4) != 6*(peers/2) && len(resp.Compact4) != 6*(peers-1) {
				t.Errorf("%d peers handed out", len(resp.Compact4)/6)
			}
			return err
		})
		el := time.Since(start)
		cpu = (cpuSeconds(t, c) - cpu) / rounds * 1e6
		t.Logf("nodetail %v: %.1f bytes per IPv4 peer; %s; INFO cpu %.1f us per announce; %.0f announces/s from %d goroutines",
			mode, per, evalStats(t, c), cpu, rounds/el.Seconds(), workers)
		s.Close()
	}
}

// profileTorrents is the profile's number of torrents: 10,000, or
// STARLING_REDIS_PROFILE_TORRENTS.
func profileTorrents() int {
	if n, _ := strconv.Atoi(os.Getenv("STARLING_REDIS_PROFILE_TORRENTS")); n > 0 {
		return n
	}
	return 10000
}

// loadUniform announces peers IPv4 peers to each of torrents swarms, half
// of them seeders, from workers goroutines.
func loadUniform(t *testing.T, s *Store, torrents, peers, workers int) {
	parallel(t, workers, torrents*peers, func(i int) error {
		tor, p := i%torrents, i/torrents
		a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(p), swarmtest.Addr4(tor*peers+p, 6881), 0)
		a.NumWant, a.Left = 0, int64(p%2)
		var resp bittorrent.AnnounceResponse
		_, err := s.Announce(context.Background(), &a, &resp)
		return err
	})
}

// pin puts Redis on the cores named by STARLING_REDIS_PIN, when set (run
// the test itself on the others), so that its time per call is not the
// load generator's.
func pin(t *testing.T, r *redisServer) {
	if os.Getenv("STARLING_REDIS_PIN") == "" {
		return
	}
	if out, err := exec.Command("taskset", "-p", "-c", os.Getenv("STARLING_REDIS_PIN"), strconv.Itoa(r.cmd.Process.Pid)).CombinedOutput(); err != nil {
		t.Fatalf("taskset: %v %s", err, out)
	}
}

// cpuSeconds is Redis's user and system CPU time so far (INFO cpu).
func cpuSeconds(t *testing.T, c rueidis.Client) float64 {
	user, sys := cpuSplit(t, c)
	return user + sys
}

// cpuSplit is Redis's user and system CPU time so far, apart: on a busy
// machine the user time of a pipelined load is the steadiest measure of
// what a script costs (its wall time, usec_per_call, grows whenever Redis
// is descheduled; its system time is the sockets').
func cpuSplit(t *testing.T, c rueidis.Client) (user, sys float64) {
	info, err := c.Do(context.Background(), c.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_cpu_user:"); ok {
			user, _ = strconv.ParseFloat(v, 64)
		} else if v, ok := strings.CutPrefix(l, "used_cpu_sys:"); ok {
			sys, _ = strconv.ParseFloat(v, 64)
		}
	}
	return user, sys
}

func usedMemory(t *testing.T, c rueidis.Client) int64 {
	info, err := c.Do(context.Background(), c.B().Info().Section("memory").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "used_memory:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no used_memory")
	return 0
}

func evalStats(t *testing.T, c rueidis.Client) string {
	info, err := c.Do(context.Background(), c.B().Info().Section("commandstats").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	var out string
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "cmdstat_evalsha:"); ok {
			out = "evalsha " + v + out
		} else if v, ok := strings.CutPrefix(l, "cmdstat_"); ok && os.Getenv("STARLING_REDIS_PROFILE_ALL") != "" {
			out += "\n\t" + v
		}
	}
	return out
}

// parallel runs f(0..n-1) on workers goroutines.
func parallel(t *testing.T, workers, n int, f func(int) error) {
	var wg sync.WaitGroup
	var once sync.Once
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := f(i); err != nil {
					once.Do(func() { t.Error(err) })
					return
				}
			}
		}()
	}
	wg.Wait()
}

// TestScriptVariants times announce script variants (files named in
// STARLING_REDIS_SCRIPTS, separated by commas; name one several times to
// interleave) on the same data: 1,000 swarms of 20, compact re-announces
// at numwant 50 from 64 goroutines (rueidis pipelines them). It reports
// Redis's user and system CPU per call apart (see cpuSplit).
func TestScriptVariants(t *testing.T) {
	files := os.Getenv("STARLING_REDIS_SCRIPTS")
	if files == "" {
		t.Skip("STARLING_REDIS_SCRIPTS is not set")
	}
	r := startRedis(t, 0)
	pin(t, r)
	c := rawClient(t, r.url())
	s := newTestStore(t, Config{URL: r.url(), Prefix: "starling:", Timeout: 5 * time.Second})
	const torrents, peers = 1000, 20
	loadUniform(t, s, torrents, peers, 16)
	for _, f := range strings.Split(files, ",") {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(os.Getenv("STARLING_REDIS_LOOP")); n > 0 {
			loopVariant(t, s, c, f, string(src), n)
			continue
		}
		if k, _ := strconv.Atoi(os.Getenv("STARLING_REDIS_BATCH")); k > 0 {
			batchVariant(t, s, c, f, string(src), k)
			continue
		}
		l := script(string(src), defaultPackMax)
		c.Do(context.Background(), c.B().ConfigResetstat().Build())
		u0, s0 := cpuSplit(t, c)
		parallel(t, 64, 50000, func(i int) error {
			k := (i * 7919) % (torrents * peers)
			tor, p := k%torrents, k/torrents
			a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(p), swarmtest.Addr4(tor*peers+p, 6881), 0)
			a.NumWant, a.Left, a.Compact = 50, int64(p%2), true
			b := s.getBuf()
			keys, args := s.fillAnnounce(b, &a)
			if n, _ := strconv.Atoi(os.Getenv("STARLING_REDIS_ARGS")); n > 0 {
				keys, args = keys[:min(n, len(keys))], args[:min(n, len(args))]
			}
			return l.Exec(context.Background(), c, keys, args).Error()
		})
		u1, s1 := cpuSplit(t, c)
		t.Logf("%s: %s; INFO cpu user %.2f sys %.2f us per call", f, evalStats(t, c), (u1-u0)/50000*1e6, (s1-s0)/50000*1e6)
	}
}

// loopVariant runs script src n times inside one EVAL per peer, for 200
// peers of the data TestScriptVariants loads, each run a compact
// re-announce at numwant 50 with the clock given (one second later each
// time), and reports Redis's user CPU per run: what the script itself
// costs, without the call's dispatch, the sockets, or Redis's turns off
// the core on a busy machine (STARLING_REDIS_LOOP=n).
func loopVariant(t *testing.T, s *Store, c rueidis.Client, name, src string, n int) {
	wrapped := expand(`local N, base = tonumber(ARGV[5]), ARGV[4]
local function body()
`+src+`
end
for i = 1, N do
  ARGV[4] = string.sub(base, 1, 7) .. '\1' .. string.sub(base, 9, 16) .. struct.pack('<i8', 100000000 + i)
  body()
end
return 1`, defaultPackMax)
	sha, err := c.Do(context.Background(), c.B().ScriptLoad().Script(wrapped).Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	u0, _ := cpuSplit(t, c)
	const peers = 200
	for i := range peers {
		k := (i * 7919) % 20000
		tor, p := k%1000, k/1000
		a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(p), swarmtest.Addr4(tor*20+p, 6881), 0)
		a.NumWant, a.Left, a.Compact = 50, int64(p%2), true
		b := s.getBuf()
		keys, args := s.fillAnnounce(b, &a)
		args = append(args[:4:4], strconv.Itoa(n))
		err := c.Do(context.Background(), c.B().Evalsha().Sha1(sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()).Error()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	u1, _ := cpuSplit(t, c)
	t.Logf("%s: user CPU %.2f us per run (%d runs in one EVAL, %d peers)", name, (u1-u0)/float64(peers*n)*1e6, n, peers)
}

// batchVariant runs script src for k announces per EVALSHA (each with
// its own keys and arguments, run one after the other inside the call),
// with 64 announces in flight as in TestScriptVariants, and reports
// Redis's CPU per announce: what one call per UDP batch would cost
// against one call per announce (STARLING_REDIS_BATCH=k; 1: one call an
// announce). Every announce is a re-announce a second or more after the
// one before, as in bench-redis.sh (the common case, announceFast): the
// clock is given and moves on with each call.
func batchVariant(t *testing.T, s *Store, c rueidis.Client, name, src string, k int) {
	s = newTestStore(t, Config{URL: s.cfg.URL, Prefix: s.cfg.Prefix, AnnounceClock: true, Timeout: 5 * time.Second})
	now := time.Now().Unix() + 1000
	wrapped := expand(`local K, A, out = {}, {}, {}
for i = 1, #KEYS do K[i] = KEYS[i] end
for i = 1, #ARGV do A[i] = ARGV[i] end
local function body()
`+src+`
end
for j = 0, #K / 9 - 1 do
  for i = 1, 9 do KEYS[i] = K[j * 9 + i] end
  for i = 1, 4 do ARGV[i] = A[j * 4 + i] end
  out[j + 1] = body()
end
return out`, defaultPackMax)
	sha, err := c.Do(context.Background(), c.B().ScriptLoad().Script(wrapped).Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	const announces = 50000
	c.Do(context.Background(), c.B().ConfigResetstat().Build())
	u0, s0 := cpuSplit(t, c)
	parallel(t, max(64/k, 1), announces/k, func(call int) error {
		var keys, args []string
		for j := range k {
			kk := ((call*k + j) * 7919) % 20000
			tor, p := kk%1000, kk/1000
			a := swarmtest.Announce(swarmtest.Hash(tor), swarmtest.PeerID(p), swarmtest.Addr4(tor*20+p, 6881), 0)
			a.NumWant, a.Left, a.Compact = 50, int64(p%2), true
			a.Now = now + int64(call)
			b := &callBuf{arena: make([]byte, 0, 1024)}
			ks, as := s.fillAnnounce(b, &a)
			keys, args = append(keys, ks...), append(args, as...)
		}
		return c.Do(context.Background(), c.B().Evalsha().Sha1(sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()).Error()
	})
	u1, s1 := cpuSplit(t, c)
	t.Logf("%s, %d announces per call: %s; INFO cpu user %.2f sys %.2f us per announce", name, k, evalStats(t, c),
		(u1-u0)/announces*1e6, (s1-s0)/announces*1e6)
}
