//go:build !linux

package udpload

// newPacer paces with Go timers (no timerfd here).
func newPacer(win *window, first, every int64) pacer {
	return newTimerPacer(win, first, every)
}
