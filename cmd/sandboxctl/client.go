package main

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/datasandbox/datasandbox/api/client"
)

// newClient is the API client (package api/client) for the global flags:
// the node, the account's key file and the consortium's CA. A key or CA
// file that cannot be read is reported at the first request.
func newClient(g *globals) *client.Client {
	return client.New(client.Config{Server: g.server, KeyFile: g.key, CAFile: g.ca, Timeout: 60 * time.Second})
}

// upload streams a file with a progress bar labelled label (drawn when
// stderr is a terminal).
func upload(ctx context.Context, g *globals, c *client.Client, path, file, contentType, label string, out any) error {
	var bar *progress
	defer func() {
		if bar != nil {
			bar.Done()
		}
	}()
	return c.Upload(ctx, path, file, contentType, func(sent, size int64) {
		if bar == nil {
			bar = newProgress(g.stderr, label, size, true)
		}
		bar.Add(sent - bar.done)
	}, out)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
