package bittorrent

import (
	"reflect"
	"testing"
)

// TestResetClearsEveryField: Reset clears field by field, so a field added
// to AnnounceResponse must be cleared there too.
func TestResetClearsEveryField(t *testing.T) {
	r := AnnounceResponse{Interval: 1, MinInterval: 2, Seeders: 3, Leechers: 4,
		Peers4: make([]Peer, 1, 8), Peers6: make([]Peer, 1, 8), Compact4: []byte{1}, Compact6: []byte{2}}
	r.Reset()
	v := reflect.ValueOf(r)
	for i := range v.NumField() {
		f := v.Field(i)
		if f.Kind() == reflect.Slice {
			if f.Len() != 0 {
				t.Errorf("%s keeps %d elements", v.Type().Field(i).Name, f.Len())
			}
		} else if !f.IsZero() {
			t.Errorf("%s = %v after Reset", v.Type().Field(i).Name, f)
		}
	}
	if cap(r.Peers4) != 8 || cap(r.Peers6) != 8 {
		t.Error("Reset dropped the peer buffers")
	}
	if n := v.NumField(); n != 8 {
		t.Errorf("AnnounceResponse has %d fields; Reset clears 8: clear the new ones there and update this count", n)
	}
}
