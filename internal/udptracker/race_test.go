//go:build race

package udptracker

// raceEnabled: the race detector allocates on its own, so allocation counts
// over whole processes are meaningless under it.
const raceEnabled = true
