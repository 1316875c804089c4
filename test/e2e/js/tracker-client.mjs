// Drives webtorrent's bittorrent-tracker Client, used as its README shows,
// against one tracker URL. Prints one JSON line on success; exits 1 with the
// reason on failure. Modes:
//   pair URL      two default Clients on one torrent find each other
//   sequence URL  start, scrape, complete, scrape, stop, scrape: the counts
import { Client } from 'bittorrent-tracker'
import { randomBytes } from 'node:crypto'

const [mode, announce] = process.argv.slice(2)
const infoHash = randomBytes(20).toString('hex')
const deadline = setTimeout(() => fail(`${mode}: no result within 20 s`), 20000)

function fail (msg) {
  console.error(msg)
  process.exit(1)
}

function client (port) {
  const peerId = Buffer.concat([Buffer.from('-JS0001-'), randomBytes(12)]).toString('hex')
  const c = new Client({ infoHash, peerId, port, announce: [announce] })
  c.on('error', err => fail(`client on port ${port}: error ${err.message}`))
  c.on('warning', err => fail(`client on port ${port}: warning ${err.message}`))
  return c
}

// next resolves with the next event named ev of c whose value passes ok.
function next (c, ev, ok = () => true) {
  return new Promise(resolve => {
    const on = v => {
      if (!ok(v)) return
      c.removeListener(ev, on)
      resolve(v)
    }
    c.on(ev, on)
  })
}

async function pair () {
  const a = client(16881)
  const b = client(16882)
  let got = next(a, 'update')
  a.start()
  await got
  const bGetsA = next(b, 'peer', p => p.endsWith(':16881'))
  b.start()
  await bGetsA
  const aGetsB = next(a, 'peer', p => p.endsWith(':16882'))
  a.update()
  await aGetsB
  got = Promise.all([next(a, 'update'), next(b, 'update')])
  a.stop()
  b.stop()
  await got
  return { a: 'handed b', b: 'handed a' }
}

async function scrape (c) {
  const s = next(c, 'scrape')
  c.scrape()
  const r = await s
  return [r.complete, r.incomplete, r.downloaded]
}

async function sequence () {
  const a = client(16891)
  const b = client(16892)
  const steps = []
  const expect = async (name, want) => {
    const got = await scrape(b)
    steps.push({ name, got })
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      fail(`${name}: scrape [complete, incomplete, downloaded] = ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
    }
  }
  let got = next(a, 'update')
  a.start()
  await got
  got = next(b, 'update')
  b.start()
  await got
  await expect('two started', [0, 2, 0])
  got = next(a, 'update')
  a.complete({ left: 0, downloaded: 16384 })
  await got
  await expect('one completed', [1, 1, 1])
  got = next(a, 'update')
  a.stop({ left: 0 })
  await got
  await expect('the seeder stopped', [0, 1, 1])
  got = next(b, 'update')
  b.stop()
  await got
  await expect('both stopped', [0, 0, 1])
  return { steps }
}

const run = { pair, sequence }[mode]
if (!run) fail(`unknown mode ${mode}`)
run().then(r => {
  clearTimeout(deadline)
  console.log(JSON.stringify({ mode, announce, ...r }))
  process.exit(0)
}, err => fail(`${mode}: ${err.stack || err}`))
