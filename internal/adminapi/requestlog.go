package adminapi

import (
	"context"
	"log/slog"
)

// requestIDKey carries a request's x-request-id in its context.
type requestIDKey struct{}

// requestIDHandler adds the request_id of the context to every record, so
// each line about a request (a failed operation's warning, a panic, the
// debug line per request) can be matched with the id its client got.
type requestIDHandler struct{ slog.Handler }

func (h requestIDHandler) Handle(ctx context.Context, r slog.Record) error {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h requestIDHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return requestIDHandler{h.Handler.WithAttrs(attrs)}
}

func (h requestIDHandler) WithGroup(name string) slog.Handler {
	return requestIDHandler{h.Handler.WithGroup(name)}
}
