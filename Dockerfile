# syntax=docker/dockerfile:1
#
# Starling container image: a static binary on distroless, running as a
# non-root user, laid out as Torrust's image is (config in /etc/torrust/tracker,
# data in /var/lib/torrust/tracker, the same ports), so it drops into existing
# deployments.
#
#   docker build -t starling .
#   docker run -p 6969:6969/udp -p 7070:7070 -p 1212:1212 \
#     -e STARLING_CONFIG_OVERRIDE_HTTP_API__ACCESS_TOKENS__ADMIN=change-me \
#     -v starling-data:/var/lib/torrust/tracker starling

ARG GO_VERSION=1.26

# ---- build: a static binary (pure-Go SQLite, no cgo) ----
FROM golang:${GO_VERSION} AS builder
WORKDIR /src
# Dependencies first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOFLAGS=-trimpath go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/starling ./cmd/starling \
 && mkdir -p /out/etc/torrust/tracker /out/var/lib/torrust/tracker/database \
 && cp contrib/container/tracker.toml /out/etc/torrust/tracker/tracker.toml

# ---- run: distroless static, uid 65532 ("nonroot") ----
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
COPY --from=builder /out/starling /usr/bin/starling
COPY --from=builder --chown=65532:65532 /out/etc/torrust/tracker /etc/torrust/tracker
COPY --from=builder --chown=65532:65532 /out/var/lib/torrust/tracker /var/lib/torrust/tracker
ENV STARLING_CONFIG_TOML_PATH=/etc/torrust/tracker/tracker.toml
WORKDIR /var/lib/torrust/tracker
VOLUME ["/var/lib/torrust/tracker"]
USER 65532:65532
EXPOSE 6969/udp 7070 1212 1313
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/bin/starling","healthcheck","http://localhost:1313/health_check"]
ENTRYPOINT ["/usr/bin/starling"]
CMD ["serve"]
