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

// Client errors of the tracker's rules, worded as in Torrust v3 (without the
// transport's prefix and Torrust's source location).
var (
	ErrMissingKey = &ClientError{KindAuth, "Missing authentication key param for private tracker."}
	ErrExpiredKey = &ClientError{KindAuth, "Key has expired"}
)

// ErrUnknownKey is the answer to a key the tracker does not hold.
func ErrUnknownKey(k Key) *ClientError {
	return &ClientError{KindAuth, "Failed to read key: " + k.String()}
}

// ErrNotWhitelisted is the answer to a torrent a listed tracker does not serve.
func ErrNotWhitelisted(h InfoHash) *ClientError {
	return &ClientError{KindTracker, "The torrent: " + h.String() + ", is not whitelisted"}
}
