// Runs webtorrent's bittorrent-tracker Server with only its WebSocket
// tracker, on 127.0.0.1:PORT, to benchmark Starling against it (see
// BENCHMARKS.md, "WebSocket tracker"). Prints its URL; runs until killed.
import { Server } from 'bittorrent-tracker'

const port = Number(process.argv[2] || 8001)
const server = new Server({ udp: false, http: false, ws: true, stats: false })
server.on('error', err => { console.error(err.message); process.exit(1) })
server.on('warning', () => {})
server.listen(port, '127.0.0.1', () => console.log(`ws://127.0.0.1:${port}`))
