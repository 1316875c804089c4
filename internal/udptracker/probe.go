package udptracker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// Probe does one real connect round trip with the UDP tracker at addr
// (host:port), for the health check. It fails when no valid connect
// response arrives before ctx ends (or within 5 s without a deadline).
func Probe(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("probe udp tracker %s: %w", addr, err)
	}
	defer c.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(5 * time.Second)
	}
	if err := c.SetDeadline(deadline); err != nil {
		return fmt.Errorf("probe udp tracker %s: %w", addr, err)
	}
	// Unblock the read if ctx is cancelled before the deadline.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	var req [headerLen]byte
	binary.BigEndian.PutUint64(req[0:8], protocolID)
	binary.BigEndian.PutUint32(req[8:12], actionConnect)
	if _, err := rand.Read(req[12:16]); err != nil {
		return fmt.Errorf("probe udp tracker %s: %w", addr, err)
	}
	if _, err := c.Write(req[:]); err != nil {
		return fmt.Errorf("probe udp tracker %s: send connect: %w", addr, err)
	}
	var resp [64]byte
	for {
		n, err := c.Read(resp[:])
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("probe udp tracker %s: %w", addr, ctx.Err())
			}
			return fmt.Errorf("probe udp tracker %s: no connect response: %w", addr, err)
		}
		if n < connectRespLen || string(resp[4:8]) != string(req[12:16]) {
			continue // not our answer; keep waiting until the deadline
		}
		if binary.BigEndian.Uint32(resp[0:4]) != actionConnect {
			return fmt.Errorf("probe udp tracker %s: %w", addr, errors.New("answer is not a connect response"))
		}
		return nil
	}
}
