package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/starling-tracker/starling/internal/bittorrent"
	"github.com/starling-tracker/starling/internal/trackerclient"
)

// clientFlags are the flags of `starling client announce|scrape`.
type clientFlags struct {
	event      string
	port       uint16
	numwant    int32
	left       int64
	uploaded   int64
	downloaded int64
	family     string
	timeout    time.Duration
	peerID     string
	insecure   bool
	noCompact  bool
}

func newClientCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Announce to or scrape a UDP, HTTP or HTTPS tracker and print the answer as JSON",
		Long: `Talk to a tracker as a BitTorrent client would and print its decoded answer as JSON.

  starling client announce udp://127.0.0.1:6969 9c38422213e30bff212b30c360d26f9a02136422
  starling client announce http://127.0.0.1:7070/announce/<32-char key> <info hash>
  starling client announce udp://127.0.0.1:6969/announce/<32-char key> <info hash>
  starling client scrape   https://tracker.example/announce <info hash> <info hash>...

Exit status: 0 answered; 1 the tracker answered with an error (failure reason or UDP
error packet); 2 bad arguments; 3 no valid answer (timeout, connection refused, or an
answer that is not a tracker's).

A udp:// URL's path and query are sent after each announce as BEP 41 URL data, which
is how a private tracker gets the key of udp://host:port/announce/<key>; a UDP scrape
cannot carry them.`,
	}
	announce := &cobra.Command{
		Use:   "announce URL INFO_HASH...",
		Short: "Announce (one request per info hash) and print each answer",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runClient(cmd, args, f, true)
		},
	}
	fs := announce.Flags()
	fs.StringVar(&f.event, "event", "started", "announce event: started, stopped, completed or none")
	fs.Uint16Var(&f.port, "port", 6881, "port the peer listens on")
	fs.Int32Var(&f.numwant, "numwant", -1, "peers wanted (negative: the tracker's default)")
	fs.Int64Var(&f.left, "left", 0, "bytes left to download (0: a seeder)")
	fs.Int64Var(&f.uploaded, "uploaded", 0, "bytes uploaded")
	fs.Int64Var(&f.downloaded, "downloaded", 0, "bytes downloaded")
	fs.StringVar(&f.peerID, "peer-id", "", "peer id: 20 characters or 40 hex digits (default: random -ST0001-…)")
	fs.BoolVar(&f.noCompact, "no-compact", false, "HTTP: ask for the BEP 3 list of peer dictionaries instead of compact peers")
	scrape := &cobra.Command{
		Use:   "scrape URL INFO_HASH...",
		Short: "Scrape the info hashes in one request (UDP: 74 per packet) and print the counts",
		RunE: func(cmd *cobra.Command, args []string) error {
			return runClient(cmd, args, f, false)
		},
	}
	for _, c := range []*cobra.Command{announce, scrape} {
		c.Flags().StringVar(&f.family, "ip-family", "", "resolve and connect over IPv4 (4) or IPv6 (6) only")
		c.Flags().DurationVar(&f.timeout, "timeout", trackerclient.DefaultTimeout, "give up when the tracker has not answered in this time")
		c.Flags().BoolVar(&f.insecure, "insecure", false, "HTTPS: accept any certificate (self-signed test setups)")
		quietUsageErrors(c)
	}
	cmd.AddCommand(announce, scrape)
	return cmd
}

// quietUsageErrors makes cobra leave error printing to the command, so the
// exit status can say what kind of failure it was.
func quietUsageErrors(c *cobra.Command) {
	c.SilenceErrors = true
	c.SilenceUsage = true
	c.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		fmt.Fprintf(c.ErrOrStderr(), "error: %v\nsee %s --help\n", err, c.CommandPath())
		return exitError{trackerclient.ExitUsage}
	})
}

func usageError(cmd *cobra.Command, format string, a ...any) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "error: "+format+"\nsee %s --help\n", append(a, cmd.CommandPath())...)
	return exitError{trackerclient.ExitUsage}
}

func parseEvent(s string) (bittorrent.Event, error) {
	switch strings.ToLower(s) {
	case "started":
		return bittorrent.EventStarted, nil
	case "stopped":
		return bittorrent.EventStopped, nil
	case "completed":
		return bittorrent.EventCompleted, nil
	case "none", "", "empty":
		return bittorrent.EventNone, nil
	}
	return bittorrent.EventNone, fmt.Errorf("--event %q: use started, stopped, completed or none", s)
}

func parsePeerID(s string) (bittorrent.PeerID, error) {
	var id bittorrent.PeerID
	switch {
	case s == "":
		copy(id[:], "-ST0001-")
		const alnum = "0123456789abcdefghijklmnopqrstuvwxyz"
		var r [12]byte
		_, _ = rand.Read(r[:])
		for i, b := range r {
			id[8+i] = alnum[int(b)%len(alnum)]
		}
	case len(s) == 20:
		copy(id[:], s)
	case len(s) == 40:
		if _, err := hex.Decode(id[:], []byte(s)); err != nil {
			return id, fmt.Errorf("--peer-id %q: 40 characters must be hex digits", s)
		}
	default:
		return id, fmt.Errorf("--peer-id %q: give 20 characters or 40 hex digits", s)
	}
	return id, nil
}

// announceOutput is what `starling client announce` prints per info hash.
type announceOutput struct {
	URL      string `json:"url"`
	InfoHash string `json:"info_hash"`
	*trackerclient.AnnounceResult
	FailureReason string `json:"failure_reason,omitempty"`
}

type scrapeFileOutput struct {
	InfoHash string `json:"info_hash"`
	trackerclient.ScrapeFile
}

type scrapeOutput struct {
	URL           string             `json:"url"`
	Files         []scrapeFileOutput `json:"files,omitempty"`
	FailureReason string             `json:"failure_reason,omitempty"`
}

func runClient(cmd *cobra.Command, args []string, f *clientFlags, announce bool) error {
	if len(args) < 2 {
		return usageError(cmd, "give a tracker URL and at least one info hash (40 hex digits)")
	}
	hashes := make([]bittorrent.InfoHash, 0, len(args)-1)
	for _, a := range args[1:] {
		h, err := bittorrent.ParseInfoHash(a)
		if err != nil {
			return usageError(cmd, "info hash %q: %v", a, err)
		}
		hashes = append(hashes, h)
	}
	family, err := trackerclient.ParseFamily(f.family)
	if err != nil {
		return usageError(cmd, "--ip-family: %v", err)
	}
	req := trackerclient.Announce{Port: f.port, NumWant: f.numwant, Left: f.left, Uploaded: f.uploaded, Downloaded: f.downloaded}
	if announce {
		if req.Event, err = parseEvent(f.event); err != nil {
			return usageError(cmd, "%v", err)
		}
		if req.PeerID, err = parsePeerID(f.peerID); err != nil {
			return usageError(cmd, "%v", err)
		}
		if f.left < 0 || f.uploaded < 0 || f.downloaded < 0 {
			return usageError(cmd, "--left, --uploaded and --downloaded cannot be negative")
		}
		req.NoCompact = f.noCompact
		var k [4]byte
		_, _ = rand.Read(k[:])
		req.Key = uint32(k[0])<<24 | uint32(k[1])<<16 | uint32(k[2])<<8 | uint32(k[3])
	}
	if f.timeout <= 0 || f.timeout > math.MaxInt32*time.Second {
		return usageError(cmd, "--timeout %s: give a positive duration such as 5s", f.timeout)
	}
	client, err := trackerclient.New(args[0], trackerclient.Options{Timeout: f.timeout, Family: family, Insecure: f.insecure})
	if err != nil {
		return usageError(cmd, "%v", err)
	}
	defer client.Close()

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
	defer stop()
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	worst := trackerclient.ExitOK
	report := func(v any, err error) {
		if err != nil {
			fmt.Fprintln(errOut, "error:", err)
			worst = max(worst, trackerclient.ExitCode(err))
		}
		if v != nil {
			writeJSON(out, v)
		}
	}
	if announce {
		for _, h := range hashes {
			req.InfoHash = h
			res, err := client.Announce(ctx, req)
			report(announceResult(args[0], h, res, err))
			if ctx.Err() != nil {
				break
			}
		}
	} else {
		files, err := client.Scrape(ctx, hashes)
		o := &scrapeOutput{URL: trackerclient.RedactURL(args[0])}
		for _, f := range files {
			o.Files = append(o.Files, scrapeFileOutput{f.InfoHash.String(), f})
		}
		if err != nil && !failureReason(err, &o.FailureReason) {
			report(nil, err) // nothing from the tracker to print
		} else {
			report(o, err)
		}
	}
	if worst != trackerclient.ExitOK {
		return exitError{worst}
	}
	return nil
}

// announceResult is the output for one announce: the answer, the tracker's
// refusal (printed too, it is the tracker's answer), or nothing.
func announceResult(url string, h bittorrent.InfoHash, res trackerclient.AnnounceResult, err error) (any, error) {
	o := &announceOutput{URL: trackerclient.RedactURL(url), InfoHash: h.String()}
	switch {
	case err == nil:
		o.AnnounceResult = &res
	case failureReason(err, &o.FailureReason):
	default:
		return nil, err
	}
	return o, err
}

// failureReason copies the tracker's refusal into dst and says whether err
// was one.
func failureReason(err error, dst *string) bool {
	var te *trackerclient.TrackerError
	if !errors.As(err, &te) {
		return false
	}
	*dst = te.Message
	return true
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
