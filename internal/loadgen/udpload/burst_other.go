//go:build !linux

package udpload

import (
	"context"
	"errors"
	"io"
)

// RunBurst needs Linux: it reads kernel timestamps and /proc.
func RunBurst(ctx context.Context, cfg Config, progress io.Writer) ([]BurstResult, error) {
	return nil, errors.New("burst runs need Linux")
}
