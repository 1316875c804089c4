package healthcheck

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// GetOK checks that url answers GET with status 200 and exactly wantBody,
// on a fresh connection. Certificates are not verified: a probe targets a
// listener of this process by address, which a certificate names by host
// name, and only checks that it answers.
func GetOK(ctx context.Context, url, wantBody string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // #nosec G402 -- see above
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return fmt.Errorf("probe %s: read answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != wantBody {
		return fmt.Errorf("probe %s: got %d %q, want 200 %s", url, resp.StatusCode, body, wantBody)
	}
	return nil
}
