// Package swarm defines the contract of a swarm store: where the tracker keeps
// the peers of every torrent. Backends (memswarm in memory, redisswarm on
// Redis) implement Store and all run the conformance suite in swarmtest.
//
// The store applies the per-swarm rules that need the swarm's state under one
// lock or one round trip: identity by address, seeder/leecher counting,
// counting a completion once per peer, and choosing the peers to hand out.
// The tracker package applies everything else (modes, keys, numwant limits,
// intervals, external_ip).
package swarm

import (
	"context"
	"net/netip"

	"github.com/starling-tracker/starling/internal/bittorrent"
)

// Announce is one peer's announce, already checked and normalised by the
// tracker: Addr is the address the peer is handed out as (IPv4-mapped
// addresses are IPv4) and Now is the tracker's clock in unix seconds.
type Announce struct {
	InfoHash   bittorrent.InfoHash
	PeerID     bittorrent.PeerID
	Addr       netip.AddrPort
	Uploaded   int64
	Downloaded int64
	Left       int64
	Event      bittorrent.Event
	Now        int64
	// NumWant is how many peers to hand out (already capped, > 0 or 0 for none).
	NumWant int
	// Families are the peer lists wanted; with both, up to NumWant in total.
	Families bittorrent.Family
	// Compact asks for the peers in compact form, as the answer carries
	// them (UDP, compact HTTP): in resp.Compact4 and resp.Compact6, with
	// resp.Peers4 and resp.Peers6 left as they were.
	Compact bool
	// Sample, when not 0, is the randomness to draw the sample of peers
	// from, as given to a Prefetcher in the announce's Hint, so it could
	// load the sample's peers ahead; 0 lets the store draw its own.
	Sample uint64
}

// Result says what an announce changed that the tracker must pass on.
type Result struct {
	// Completed is the torrent's completed count after this announce.
	Completed uint32
	// CountedCompletion is true when this announce added one to Completed
	// (so the persistence layer can write the new count).
	CountedCompletion bool
}

// Store keeps the swarms. Every method is safe for concurrent use.
//
// Rules every backend follows (swarmtest checks them):
//   - A peer is identified within a swarm by Addr (IP and port), never by
//     peer_id: an announce from a new port is a second peer, and nobody can
//     update or remove a peer registered from another address.
//   - A peer is a seeder when Left == 0 (bittorrent.Complete), a leecher
//     otherwise: a negative Left is unknown (UDP carries a signed left, and
//     an HTTP announce without left is bittorrent.LeftUnknown).
//   - EventStopped removes the peer (and stores nothing).
//   - Port 0 is answered but never stored; its completion is counted, once
//     per address as far as the store remembers (see the next rule).
//   - Completed counts one per peer that reports EventCompleted and has not
//     been counted in this swarm before, including on its first announce;
//     a peer that stops after its completion was counted is remembered (a
//     bounded memory) and its address is not counted again if it returns.
//   - The answer is a random sample of up to NumWant peers of the wanted
//     families, never the requester itself. A seeder is handed only
//     leechers while the wanted families hold any; when they hold none, it
//     is handed seeders (a peer that wrongly reports left 0, such as a
//     magnet download before it has the metadata, still finds the swarm).
//   - The counts in the answer include the requester's own new state.
//   - A torrent is created by the first announce that stores a peer (or by
//     SetCompleted) and is removed only by Sweep, never by an announce.
type Store interface {
	// Announce applies a and appends the chosen peers to resp.Peers4 and
	// resp.Peers6 (resp.Compact4 and resp.Compact6 when a.Compact),
	// setting resp.Seeders and resp.Leechers.
	Announce(ctx context.Context, a *Announce, resp *bittorrent.AnnounceResponse) (Result, error)
	// Scrape appends one entry per hash to out, in order, zeros for unknown.
	Scrape(ctx context.Context, hashes []bittorrent.InfoHash, out []bittorrent.SwarmStats) ([]bittorrent.SwarmStats, error)
	// Torrent returns one torrent with all its peers, for the API.
	Torrent(ctx context.Context, h bittorrent.InfoHash) (Torrent, bool, error)
	// Torrents lists torrents sorted by hash bytes, skipping offset and
	// returning at most limit, for the API.
	Torrents(ctx context.Context, offset, limit int) ([]TorrentSummary, error)
	// Totals are the store-wide counts, kept as the store changes.
	Totals(ctx context.Context) (Totals, error)
	// SetCompleted loads persisted completed counts (at start-up).
	SetCompleted(ctx context.Context, counts []CompletedCount) error
	// Sweep removes peers last seen at or before cutoff (unix seconds), and
	// then peerless torrents when the store was configured to.
	Sweep(ctx context.Context, cutoff int64) (SweepResult, error)
}

// PeerDetailer is implemented by a store that may keep less of a peer
// than swarm.PeerInfo holds: PeerDetail false means that its answers and
// Torrent carry no peer_id, uploaded, downloaded or event, and only
// whether a peer is a seeder (Left 0) or not (bittorrent.LeftUnknown).
// The Redis store does so to hold a peer in under 40 bytes. A store
// without the method keeps everything.
type PeerDetailer interface {
	PeerDetail() bool
}

// RelayCounter is implemented by stores that count peers they do not hold.
// WebSocket (WebTorrent) peers cannot take a TCP or UDP connection, so they
// must never be handed to UDP or HTTP peers, and the WebSocket tracker
// reaches them only through their own connections: it keeps them itself
// (wstracker), and tells the store how many seeders and leechers each swarm
// has there, so that scrape, the answers' counts, the API's torrents and
// the totals include them while Announce never hands one out (the store
// has no address for them). A torrent with relayed peers is not peerless:
// Sweep keeps it until they are gone.
type RelayCounter interface {
	// CountRelayed adds seeders and leechers (either may be negative) to
	// the swarm's relayed peers, and counts one completion when completed
	// (the caller counts once per peer). It returns the swarm's counts
	// after the change, stored and relayed peers together, and whether
	// the completion was counted. A swarm is created when anything is
	// added; negative changes to a swarm the store does not know (swept)
	// are ignored.
	CountRelayed(ctx context.Context, h bittorrent.InfoHash, seeders, leechers int32, completed bool) (bittorrent.SwarmStats, Result, error)
}

// Remote is implemented by stores whose calls wait on another process
// (Redis). A transport gains from keeping several of them in flight at
// once, which the client pipelines, where with a store in memory it would
// only add work; the UDP tracker then handles a batch's requests at once.
type Remote interface {
	Remote() bool
}

// Prefetcher is implemented by stores that can warm the CPU caches for a
// batch of announces before they are applied one by one (the UDP tracker
// reads up to 64 requests per system call). It is only a hint: it changes
// nothing, and it may do nothing.
type Prefetcher interface {
	Prefetch(hints []Hint)
}

// Hint is what a Prefetcher is told of one announce.
type Hint struct {
	InfoHash bittorrent.InfoHash
	// Addr is the peer as it will be stored: the sender's IP, normalised
	// (bittorrent.NormalizeAddr), and the port it announced.
	Addr netip.AddrPort
	// Seeder, NumWant and Sample are the announce's: whether it has
	// nothing left, the num_want it sent, and the Announce.Sample it will
	// carry (0 when it carries none).
	Seeder  bool
	NumWant int32
	Sample  uint64
}

// PeerInfo is everything the store remembers of a peer.
type PeerInfo struct {
	ID         bittorrent.PeerID
	Addr       netip.AddrPort
	Updated    int64 // unix seconds
	Uploaded   int64
	Downloaded int64
	Left       int64
	Event      bittorrent.Event
}

// Torrent is one swarm with its peers.
type Torrent struct {
	TorrentSummary
	Peers []PeerInfo
}

// TorrentSummary is one swarm's counts.
type TorrentSummary struct {
	InfoHash bittorrent.InfoHash
	bittorrent.SwarmStats
}

// Totals are the counts of the whole store.
type Totals struct {
	Torrents  uint64
	Seeders   uint64
	Leechers  uint64
	Completed uint64
}

// CompletedCount is a torrent's persisted completed count.
type CompletedCount struct {
	InfoHash  bittorrent.InfoHash
	Completed uint32
}

// SweepResult says what a sweep removed.
type SweepResult struct {
	Peers    int
	Torrents int
}

// Options are the store settings that come from [core.tracker_policy].
type Options struct {
	// RemovePeerlessTorrents drops a torrent when its last peer goes...
	RemovePeerlessTorrents bool
	// ...except when KeepCompleted (persistent_torrent_completed_stat) is on
	// and the torrent has a completed count above zero.
	KeepCompleted bool
	// Limits caps what announces may add ([core.limits]); zero fields are
	// no cap.
	Limits Limits
}

// Limits cap the torrents and peers a store keeps. At a cap, an announce
// that would add a torrent or a peer gets ErrFull; peers already stored
// are served as before.
type Limits struct {
	MaxTorrents        uint64
	MaxPeers           uint64 // all swarms together
	MaxPeersPerTorrent uint64
}

// FullError is the error of an announce refused at a limit; Limit names
// it as configured ("max_torrents", "max_peers", "max_peers_per_torrent").
type FullError struct{ Limit string }

func (e *FullError) Error() string { return "the swarm store is full: " + e.Limit }

// The refusals, one value each so that returning one allocates nothing.
var (
	ErrFullTorrents        = &FullError{"max_torrents"}
	ErrFullPeers           = &FullError{"max_peers"}
	ErrFullPeersPerTorrent = &FullError{"max_peers_per_torrent"}
)

// TorrentDump is one swarm's whole state, as a snapshot keeps it: every
// peer with what the store remembers of it, and the completed count.
type TorrentDump struct {
	InfoHash  bittorrent.InfoHash
	Completed uint32
	Peers     []PeerDump
}

// PeerDump is a peer as a snapshot keeps it.
type PeerDump struct {
	PeerInfo
	// Counted is set once the peer's completion was counted in the swarm,
	// so a restored peer that reports completed again is not counted twice.
	Counted bool
}

// Dumper is implemented by stores that live in the process (memswarm) and
// so must be written out to survive a restart; a shared store (Redis) keeps
// its state elsewhere.
type Dumper interface {
	// Dump calls fn for every torrent, in pieces: a torrent may come in
	// several calls, each with some of its peers (all with the same
	// Completed). The store is read a part at a time, so announces keep
	// being served; fn's argument is reused after it returns. An error
	// from fn ends the dump and is returned.
	Dump(fn func(*TorrentDump) error) error
	// Restore adds d's peers to its torrent, creating it, and sets its
	// completed count to at least d.Completed. Peers are as stored (their
	// Updated, Event and Counted kept); one already there is replaced.
	Restore(d *TorrentDump) error
}
