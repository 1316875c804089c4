package adminapi

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Probe checks that the API at baseURL (for example http://127.0.0.1:1212)
// answers GET /api/health_check with {"status":"Ok"}, for the health check.
// Certificates are not verified: the probe targets the API's own listener
// by address, and only checks that it answers.
func Probe(ctx context.Context, baseURL string) error {
	url := strings.TrimSuffix(baseURL, "/") + "/api/health_check"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", url, err)
	}
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
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
	if resp.StatusCode != http.StatusOK || string(body) != healthBody {
		return fmt.Errorf("probe %s: got %d %q, want 200 %s", url, resp.StatusCode, body, healthBody)
	}
	return nil
}
