//go:build !linux

package udpload

// newPacer paces with Go timers (no timerfd here).
func newPacer(win *window, a *arrivals) pacer {
	return newTimerPacer(win, a)
}
