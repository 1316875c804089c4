#!/usr/bin/env python3
"""The runs behind BENCHMARKS.md's WebSocket tracker figures: one round is one tracker on core 0 (Starling with
GOMAXPROCS=1, or webtorrent's npm bittorrent-tracker server) loaded by `starling bench ws` on core 1, the tracker's
CPU time read from /proc at the load's first and last progress line; it prints one JSON line.

  compare.py starling|npm CONNECTIONS SOURCES SECONDS

STARLING is the binary (./starling), TRACKER_TOML its configuration (a [[websocket_trackers]] on 127.0.0.1:18000,
the API and health check on port 0), NPM_DIR the directory `npm ci --ignore-scripts` installed test/e2e/js in, with
ws-tracker-server.mjs copied there (the e2e tests keep one as $TMPDIR/starling-e2e-js-*). Run it under
`flock /tmp/starling-bench.lock`, alternating the two trackers."""
import glob, json, os, re, socket, subprocess, sys, time

kind, conns, sources, dur = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
starling = os.path.abspath(os.environ.get('STARLING', './starling'))
if kind == 'npm':
    port = 18001
    npm_dir = os.environ.get('NPM_DIR') or sorted(glob.glob(os.path.join(os.environ.get('TMPDIR', '/tmp'), 'starling-e2e-js-[0-9a-f]*')))[0]
    srv = subprocess.Popen(['taskset', '-c', '0', 'node', 'ws-tracker-server.mjs', str(port)], cwd=npm_dir,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
else:
    port = 18000
    env = dict(os.environ, GOMAXPROCS='1', STARLING_CONFIG_TOML_PATH=os.path.abspath(os.environ.get('TRACKER_TOML', 'tracker.toml')))
    srv = subprocess.Popen(['taskset', '-c', '0', os.path.abspath(os.environ.get('TRACKER', starling))], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(200):
    try:
        socket.create_connection(('127.0.0.1', port), 0.2).close()
        break
    except OSError:
        time.sleep(0.05)
else:
    srv.kill()
    sys.exit('the tracker did not start')
time.sleep(0.5)


def cpu_ticks():
    f = open('/proc/%d/stat' % srv.pid).read().rsplit(')', 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime


b = subprocess.Popen(['taskset', '-c', '1', starling, 'bench', 'ws', '--url', 'ws://127.0.0.1:%d' % port,
                      '--connections', str(conns), '--sources', str(sources), '--offers', '5', '--offer-bytes', '400',
                      '--duration', '%ds' % dur], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
samples = []  # (time, CPU ticks, responses in the second before)
for line in b.stderr:
    m = re.match(r'(\d+) responses/s', line)
    if m:
        samples.append((time.time(), cpu_ticks(), int(m.group(1))))
summary = b.stdout.read().strip()
b.wait()
srv.terminate()
try:
    srv.wait(10)
except subprocess.TimeoutExpired:
    srv.kill()
s = samples[:dur]
hz = os.sysconf('SC_CLK_TCK')
cpu = (s[-1][1] - s[0][1]) / hz
wall = max(s[-1][0] - s[0][0], 1e-9)
print(json.dumps({'tracker': kind, 'connections': conns, 'summary': summary, 'per_second': [x[2] for x in samples],
                  'cpu_percent': round(100 * cpu / wall, 1),
                  'cpu_us_per_response': round(1e6 * cpu / max(sum(x[2] for x in s[1:]), 1), 2),
                  'utc': time.strftime('%H:%M:%S', time.gmtime())}))
