package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// runProbe checks an HTTP endpoint and exits non-zero unless it answers 200:
// the health check of a scratch container, which has no curl.
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", stderr)
	url := fs.String("url", "http://127.0.0.1:7700/readyz", "URL to GET")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", *url, resp.StatusCode, body)
	}
	_, err = stdout.Write(body)
	return err
}
