//go:build !race

package wstracker

const raceEnabled = false
