// Drives webtorrent's bittorrent-tracker Client over a WebSocket tracker
// (ws://), with real WebRTC offers and answers: in Node the Client's peers
// are @thaunknown/simple-peer over webrtc-polyfill, whose node-datachannel
// 0.33.4 (pinned by package.json's overrides) ships its binary in
// @node-datachannel/linux-x64-gnu, so no install script is needed. Prints
// one JSON line on success; exits 1 with the reason on failure. Modes:
//   pair URL   a announces; b (on its own connection) announces with its
//              offers; a is handed b's offer and answers it through the
//              tracker; b gets the answer; a's scrape counts two peers; b's
//              connection closes and a's scrape drops to one; a stops
import { Client } from 'bittorrent-tracker'
import { randomBytes } from 'node:crypto'

const [mode, announce] = process.argv.slice(2)
const infoHash = randomBytes(20).toString('hex')
const deadline = setTimeout(() => fail(`${mode}: no result within 30 s`), 30000)

function fail (msg) {
  console.error(msg)
  process.exit(1)
}

function client (name, announce) {
  // The peer id's bytes run over the whole 0..255 range, as binary strings
  // on the wire: the tracker must hand them back byte for byte.
  const peerId = Buffer.concat([Buffer.from('-JS0001-'), randomBytes(12)]).toString('hex')
  const c = new Client({
    infoHash,
    peerId,
    port: 6881,
    announce: [announce],
    // No STUN servers: everything stays on this machine.
    rtcConfig: { iceServers: [] }
  })
  c.on('error', err => fail(`${name}: error ${err.message}`))
  c.on('warning', err => fail(`${name}: warning ${err.message}`))
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

async function scrape (c) {
  const s = next(c, 'scrape')
  c.scrape()
  const r = await s
  return [r.complete, r.incomplete, r.downloaded]
}

async function pair () {
  // Two URLs of one tracker: the Client pools sockets by URL, so a and b
  // get a connection each, as two browsers would.
  const a = client('a', announce)
  const b = client('b', announce.replace(/\/?$/, '/announce'))
  let got = next(a, 'update')
  a.start()
  const first = await got
  // b's offers reach a, which answers; the answer reaches b. A peer is
  // emitted on each side once its half of the signalling went through.
  const aGetsOffer = next(a, 'peer')
  const bGetsAnswer = next(b, 'peer')
  got = next(b, 'update')
  b.start()
  const second = await got
  const [pa, pb] = await Promise.all([aGetsOffer, bGetsAnswer])
  const both = await scrape(a)
  // b goes away without a word: its socket closes, and its peer with it.
  b.destroy()
  let afterClose
  for (let i = 0; i < 100; i++) {
    afterClose = await scrape(a)
    if (afterClose[1] === 1) break
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  got = next(a, 'update')
  a.stop()
  const stopped = await got
  a.destroy()
  return {
    first: [first.complete, first.incomplete],
    second: [second.complete, second.incomplete],
    aGotOfferFromB: pa.id === b.peerId,
    bGotAnswerFromA: pb.id === a.peerId,
    both,
    afterClose,
    stopped: [stopped.complete, stopped.incomplete]
  }
}

const modes = { pair }
if (!modes[mode]) fail(`unknown mode ${mode}`)
modes[mode]().then(r => {
  clearTimeout(deadline)
  console.log(JSON.stringify(r))
  process.exit(0)
}, err => fail(`${mode}: ${err.stack || err}`))
