//go:build !linux

package udpload

import (
	"errors"
	"net"

	"github.com/starling-tracker/starling/internal/udptracker/batch"
)

var errNoGSO = errors.New("UDP segmentation offload needs Linux")

type gsoSender struct{}

func newGSOSender(*net.UDPConn, int) (*gsoSender, error) { return nil, errNoGSO }

func (*gsoSender) Send([]batch.Message) (int, error) { return 0, errNoGSO }
