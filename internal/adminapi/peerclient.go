package adminapi

import "github.com/starling-tracker/starling/internal/bittorrent"

// azureusClients maps the two-letter code of Azureus-style peer ids
// ("-qB4250-…": dash, code, four version characters, dash) to the client's
// name, as the API shows it in peer_id.client. The list follows the public
// peer-id conventions (BEP 20 and the clients' own documentation).
var azureusClients = map[[2]byte]string{
	{'7', 'T'}: "aTorrent",
	{'A', 'B'}: "AnyEvent::BitTorrent",
	{'A', 'G'}: "Ares",
	{'A', 'R'}: "Arctic",
	{'A', 'T'}: "Artemis",
	{'A', 'V'}: "Avicora",
	{'A', 'X'}: "BitPump",
	{'A', 'Z'}: "Vuze",
	{'B', 'B'}: "BitBuddy",
	{'B', 'C'}: "BitComet",
	{'B', 'E'}: "BitTorrent SDK",
	{'B', 'F'}: "BitFlu",
	{'B', 'G'}: "BTG",
	{'B', 'I'}: "BiglyBT",
	{'B', 'L'}: "BitBlinder",
	{'B', 'P'}: "BitTorrent Pro",
	{'B', 'R'}: "BitRocket",
	{'B', 'S'}: "BTSlave",
	{'B', 'T'}: "BitTorrent",
	{'B', 'W'}: "BitWombat",
	{'B', 'X'}: "BittorrentX",
	{'C', 'D'}: "Enhanced CTorrent",
	{'C', 'T'}: "CTorrent",
	{'D', 'E'}: "Deluge",
	{'D', 'P'}: "Propagate Data Client",
	{'E', 'B'}: "EBit",
	{'E', 'S'}: "Electric Sheep",
	{'F', 'C'}: "FileCroc",
	{'F', 'D'}: "Free Download Manager",
	{'F', 'T'}: "FoxTorrent",
	{'F', 'W'}: "FrostWire",
	{'F', 'X'}: "Freebox BitTorrent",
	{'G', 'S'}: "GSTorrent",
	{'H', 'K'}: "Hekate",
	{'H', 'L'}: "Halite",
	{'H', 'M'}: "hMule",
	{'H', 'N'}: "Hydranode",
	{'I', 'L'}: "iLivid",
	{'J', 'S'}: "Justseed.it",
	{'J', 'T'}: "JavaTorrent",
	{'K', 'G'}: "KGet",
	{'K', 'T'}: "KTorrent",
	{'L', 'C'}: "LeechCraft",
	{'L', 'H'}: "LH-ABC",
	{'L', 'P'}: "Lphant",
	{'L', 'T'}: "libtorrent",
	{'l', 't'}: "libTorrent",
	{'L', 'W'}: "LimeWire",
	{'M', 'K'}: "Meerkat",
	{'M', 'O'}: "MonoTorrent",
	{'M', 'P'}: "MooPolice",
	{'M', 'R'}: "Miro",
	{'M', 'T'}: "MoonlightTorrent",
	{'N', 'B'}: "Net::BitTorrent",
	{'N', 'X'}: "Net Transport",
	{'O', 'S'}: "OneSwarm",
	{'O', 'T'}: "OmegaTorrent",
	{'P', 'B'}: "Protocol::BitTorrent",
	{'P', 'D'}: "Pando",
	{'P', 'I'}: "PicoTorrent",
	{'P', 'T'}: "PHPTracker",
	{'q', 'B'}: "qBittorrent",
	{'Q', 'D'}: "QQDownload",
	{'Q', 'T'}: "Qt 4 Torrent example",
	{'R', 'T'}: "Retriever",
	{'R', 'Z'}: "RezTorrent",
	{'S', '~'}: "Shareaza alpha/beta",
	{'S', 'B'}: "~Swiftbit",
	{'S', 'D'}: "Thunder",
	{'S', 'M'}: "SoMud",
	{'S', 'P'}: "BitSpirit",
	{'S', 'S'}: "SwarmScope",
	{'S', 'T'}: "SymTorrent",
	{'s', 't'}: "sharktorrent",
	{'S', 'Z'}: "Shareaza",
	{'T', 'B'}: "Torch",
	{'T', 'E'}: "terasaur Seed Bank",
	{'T', 'L'}: "Tribler",
	{'T', 'N'}: "TorrentDotNET",
	{'T', 'R'}: "Transmission",
	{'T', 'S'}: "Torrentstorm",
	{'T', 'T'}: "TuoTu",
	{'U', 'L'}: "uLeecher!",
	{'U', 'M'}: "µTorrent for Mac",
	{'U', 'T'}: "µTorrent",
	{'U', 'W'}: "µTorrent Web",
	{'V', 'G'}: "Vagaa",
	{'W', 'D'}: "WebTorrent Desktop",
	{'W', 'T'}: "BitLet",
	{'W', 'W'}: "WebTorrent",
	{'W', 'Y'}: "FireTorrent",
	{'X', 'F'}: "Xfplay",
	{'X', 'L'}: "Xunlei",
	{'X', 'S'}: "XSwifter",
	{'X', 'T'}: "XanTorrent",
	{'X', 'X'}: "Xtorrent",
	{'Z', 'T'}: "ZipTorrent",
}

// shadowClients are the Shadow-style ids: one letter, then version
// characters ("S58B-----…", "T03I-----…"), recognised only when followed by
// the style's version characters and dash padding, since a lone letter is
// too weak a signal.
var shadowClients = map[byte]string{
	'A': "ABC",
	'O': "Osprey Permaseed",
	'Q': "BTQueue",
	'R': "Tribler",
	'S': "Shadow's client",
	'T': "BitTornado",
	'U': "UPnP NAT Bit Torrent",
}

// ClientName names the client that chose id, or "" when the id follows no
// known convention. The API shows "" as null.
func ClientName(id bittorrent.PeerID) string {
	if id[0] == '-' && id[7] == '-' {
		if name, ok := azureusClients[[2]byte{id[1], id[2]}]; ok {
			return name
		}
		return ""
	}
	// Mainline: "M4-3-6--" (M, then digits separated by dashes).
	if id[0] == 'M' && isDigit(id[1]) && (id[2] == '-' || isDigit(id[2]) && id[3] == '-') {
		return "Mainline"
	}
	if name, ok := shadowClients[id[0]]; ok && isShadowVersion(id[1:6]) {
		return name
	}
	return ""
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isShadowVersion checks the five bytes after the letter: version
// characters ([0-9A-Za-z.]) padded with dashes, at least one of each kind.
func isShadowVersion(b []byte) bool {
	version, dashes := 0, 0
	for _, c := range b {
		switch {
		case c == '-':
			dashes++
		case dashes == 0 && (isDigit(c) || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '.'):
			version++
		default:
			return false
		}
	}
	return version > 0 && dashes > 0
}
