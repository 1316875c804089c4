package bittorrent

// ErrorKind groups client errors the way Torrust prefixes their messages.
type ErrorKind uint8

// Kinds of client error.
const (
	// KindRequest: the request itself is malformed (transports' parsers).
	KindRequest ErrorKind = iota
	// KindAuth: missing, unknown or expired peer key ("Authentication error: ").
	KindAuth
	// KindTracker: refused by the tracker's rules ("Tracker error: ").
	KindTracker
)

// ClientError is an error whose message a client may read. Anything else a
// transport receives goes out as a generic message and is logged in detail.
type ClientError struct {
	Kind ErrorKind
	Msg  string
}

func (e *ClientError) Error() string { return e.Msg }

// AuthErrorPrefix starts the text of every KindAuth error a client reads,
// over HTTP (Torrust's wording) and over UDP (BEP 41 keys), so that a refused
// key reads the same whichever way it came.
const AuthErrorPrefix = "Authentication error: "

// Client errors of the tracker's rules, worded as in Torrust v3 (without the
// transport's prefix and Torrust's source location).
var (
	ErrMissingKey = &ClientError{KindAuth, "Missing authentication key param for private tracker."}
	ErrExpiredKey = &ClientError{KindAuth, "Key has expired"}
	// ErrKeyFormat is the answer to a key in the URL that is not 32
	// alphanumerics; the transports check the format as they parse.
	ErrKeyFormat = &ClientError{KindAuth, "Invalid format for authentication key param."}
	// ErrTrackerFull answers an announce that would add a torrent or a
	// peer past a capacity limit ([core.limits]).
	ErrTrackerFull = &ClientError{KindTracker, "tracker is full, try later"}
)

// ErrUnknownKey is the answer to a key the tracker does not hold.
func ErrUnknownKey(k Key) *ClientError {
	return &ClientError{KindAuth, "Failed to read key: " + k.String()}
}

// ErrNotWhitelisted is the answer to a torrent a listed tracker does not serve.
func ErrNotWhitelisted(h InfoHash) *ClientError {
	return &ClientError{KindTracker, "The torrent: " + h.String() + ", is not whitelisted"}
}
