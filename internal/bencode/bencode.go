// Package bencode appends bencoded values (BEP 3) to a byte slice. It only
// encodes: the tracker writes small, fixed-shape answers on the hot path, so
// the encoder is a set of append functions that never allocate when the
// destination has room, instead of a reflection-based marshaller.
//
// Dictionaries are written by the caller as 'd', key/value pairs in sorted
// key order, 'e'; lists as 'l', values, 'e'. The encoder does not check the
// order of keys: callers write constant keys in the right order.
package bencode

import "strconv"

// Delimiters of dictionaries, lists and their end.
const (
	DictStart byte = 'd'
	ListStart byte = 'l'
	End       byte = 'e'
)

// AppendInt appends i<v>e.
func AppendInt(dst []byte, v int64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendInt(dst, v, 10)
	return append(dst, 'e')
}

// AppendUint appends i<v>e for an unsigned value.
func AppendUint(dst []byte, v uint64) []byte {
	dst = append(dst, 'i')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, 'e')
}

// AppendString appends <len>:<s>.
func AppendString(dst []byte, s string) []byte {
	dst = AppendStringHeader(dst, len(s))
	return append(dst, s...)
}

// AppendBytes appends <len>:<b>.
func AppendBytes(dst, b []byte) []byte {
	dst = AppendStringHeader(dst, len(b))
	return append(dst, b...)
}

// AppendStringHeader appends the <n>: that precedes a string of n bytes, for
// callers that write the string's bytes themselves (for example a list of
// compact peers built in place).
func AppendStringHeader(dst []byte, n int) []byte {
	dst = strconv.AppendUint(dst, uint64(n), 10)
	return append(dst, ':')
}
