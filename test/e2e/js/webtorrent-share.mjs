// Shares a file between two webtorrent clients (Node, TCP peers) through one
// tracker URL. Modes:
//   seed URL SIZE      make SIZE random bytes, seed them; print one JSON line
//                      {magnet, sha256}; keep seeding until stdin closes
//   fetch MAGNET DIR   download by magnet link into DIR, the tracker of the link its
//                      only source of peers; print {sha256, bytes}
import WebTorrent from 'webtorrent'
import { createHash, randomBytes } from 'node:crypto'

// size is the file's size when seeding, the directory when fetching.
const [mode, arg, size] = process.argv.slice(2)

function fail (msg) {
  console.error(msg)
  process.exit(1)
}

// Only the tracker: no DHT, local discovery, peer exchange or port mapping.
const client = new WebTorrent({ dht: false, lsd: false, utPex: false, natUpnp: false, natPmp: false, webSeeds: false })
client.on('error', err => fail(`webtorrent: ${err.message || err}`))

const sha256 = b => createHash('sha256').update(b).digest('hex')

if (mode === 'seed') {
  const data = randomBytes(Number(size))
  data.name = 'starling-e2e.bin'
  client.seed(data, { name: 'starling-e2e.bin', announce: [arg], private: false }, torrent => {
    torrent.on('warning', err => console.error(`seeder warning: ${err.message || err}`))
    console.log(JSON.stringify({ magnet: torrent.magnetURI, sha256: sha256(data) }))
  })
  process.stdin.resume()
  process.stdin.on('end', () => client.destroy(() => process.exit(0)))
} else if (mode === 'fetch') {
  setTimeout(() => fail('fetch: not complete within 30 s'), 30000)
  client.add(arg, { path: size }, torrent => {
    torrent.on('warning', err => console.error(`downloader warning: ${err.message || err}`))
    torrent.on('done', () => {
      const file = torrent.files[0]
      file.arrayBuffer().then(buf => {
        const b = Buffer.from(buf)
        console.log(JSON.stringify({ sha256: sha256(b), bytes: b.length, peers: torrent.numPeers }))
        client.destroy(() => process.exit(0))
      }, err => fail(`read: ${err}`))
    })
  })
} else {
  fail(`unknown mode ${mode}`)
}
