//go:build race

package wstracker

// raceEnabled: under the race detector sync.Pool drops items on purpose,
// so allocation counts through the pool are not meaningful.
const raceEnabled = true
