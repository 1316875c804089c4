package wstracker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// probeScrape is a scrape of the all-zero hash: answered on every mode (a
// private tracker answers zeros without a key), it takes a message through
// the whole tracker.
var probeScrape = []byte(`{"action":"scrape","info_hash":"` + strings.Repeat(`\u0000`, 20) + `"}`)

// Probe checks that the WebSocket tracker at url (ws:// or wss://) upgrades
// a connection and answers a scrape, within ctx. Certificates are not
// verified: the probe targets the tracker's own listener by address, as
// the HTTP tracker's probe does.
func Probe(ctx context.Context, url string) error {
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	ws, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			// The listener answers, at a connection cap: it is up.
			return nil
		}
		return fmt.Errorf("websocket tracker %s: %w", url, err)
	}
	defer ws.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = ws.SetReadDeadline(dl)
		_ = ws.SetWriteDeadline(dl)
	}
	if err := ws.WriteMessage(websocket.TextMessage, probeScrape); err != nil {
		return fmt.Errorf("websocket tracker %s: send a scrape: %w", url, err)
	}
	var answer struct {
		Action  string
		Files   map[string]json.RawMessage
		Failure string `json:"failure reason"`
	}
	if err := ws.ReadJSON(&answer); err != nil {
		return fmt.Errorf("websocket tracker %s: read the scrape's answer: %w", url, err)
	}
	// A failure is an answer too: the swarm store has its own entry in the
	// health check (a Redis outage must not fail the listener's).
	if answer.Action != actionScrape || (len(answer.Files) != 1 && answer.Failure == "") {
		return fmt.Errorf("websocket tracker %s: scrape answered %+v", url, answer)
	}
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return nil
}
