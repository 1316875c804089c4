package database

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// CopyResult counts the rows copied per table.
type CopyResult struct {
	Keys      int
	Whitelist int
	Torrents  int
}

// Copy copies keys, whitelist and completed counts from src into dst. Rows
// dst already holds are replaced by src's (a key takes src's expiry, a count
// src's value); rows only in dst are kept. Each table is written in one
// transaction.
func Copy(ctx context.Context, src, dst *DB) (CopyResult, error) {
	var res CopyResult
	keys, err := src.LoadKeys(ctx)
	if err != nil {
		return res, fmt.Errorf("read keys from %s: %w", src, err)
	}
	if err := dst.PutKeys(ctx, keys); err != nil {
		return res, fmt.Errorf("write keys to %s: %w", dst, err)
	}
	res.Keys = len(keys)

	list, err := src.LoadWhitelist(ctx)
	if err != nil {
		return res, fmt.Errorf("read whitelist from %s: %w", src, err)
	}
	if err := dst.PutWhitelist(ctx, list); err != nil {
		return res, fmt.Errorf("write whitelist to %s: %w", dst, err)
	}
	res.Whitelist = len(list)

	counts, err := src.LoadCompleted(ctx)
	if err != nil {
		return res, fmt.Errorf("read torrents from %s: %w", src, err)
	}
	if err := dst.SaveCompleted(ctx, counts); err != nil {
		return res, fmt.Errorf("write torrents to %s: %w", dst, err)
	}
	res.Torrents = len(counts)
	return res, nil
}

// Import is `starling db import`: it opens both databases by URL or path
// (the source to read only, see OpenSource; the destination's tables are
// created when missing), copies, and prints one line per table to out.
func Import(ctx context.Context, from, to string, out io.Writer, log *slog.Logger) error {
	src, err := OpenSource(ctx, from, log)
	if err != nil {
		return fmt.Errorf("import: source: %w", err)
	}
	defer src.Close()
	dst, err := OpenURL(ctx, to, log)
	if err != nil {
		return fmt.Errorf("import: destination: %w", err)
	}
	defer dst.Close()
	// Importing into the same place would work (every row replaces itself)
	// but is surely a mistake in the command line.
	if src.String() == dst.String() {
		return fmt.Errorf("import: --from and --to are the same database (%s)", src)
	}
	// Large tables take longer than one API write; a copy may use a minute.
	src.SetTimeout(time.Minute)
	dst.SetTimeout(time.Minute)
	res, err := Copy(ctx, src, dst)
	fmt.Fprintf(out, "keys: %d rows copied\nwhitelist: %d rows copied\ntorrents: %d rows copied\n", res.Keys, res.Whitelist, res.Torrents)
	if err != nil {
		return fmt.Errorf("import from %s to %s: %w", src, dst, err)
	}
	return nil
}
