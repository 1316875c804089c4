package adminapi

import (
	"context"
	"strings"

	"github.com/starling-tracker/starling/internal/healthcheck"
)

// Probe checks that the API at baseURL (for example http://127.0.0.1:1212)
// answers GET /api/health_check with {"status":"Ok"}, for the health check.
// Certificates are not verified: the probe targets the API's own listener
// by address, and only checks that it answers.
func Probe(ctx context.Context, baseURL string) error {
	return healthcheck.GetOK(ctx, strings.TrimSuffix(baseURL, "/")+"/api/health_check", healthBody)
}
