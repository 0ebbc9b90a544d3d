package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/outpost-edge/outpost/api"
	"github.com/outpost-edge/outpost/store"
)

func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("backup", stderr)
	target := fs.String("target", "http://127.0.0.1:7700", "API URL of the node to back up")
	token := fs.String("api-token", "", "bearer token of the node (prefer the OUTPOST_API_TOKEN environment variable)")
	to := fs.String("to", "", "file to write the backup to (a SQLite database); required")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" {
		fmt.Fprintln(stderr, "--to FILE is required")
		fs.Usage()
		return errUsage
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	info, err := downloadBackup(ctx, *target, *token, *to)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s: %d bytes, db_version %d, incarnation %s\n", *target, *to, info.Size, info.DBVersion, info.Incarnation)
	return nil
}

// baseURL is a --target as the user gives it (a URL, or host:port) with a
// scheme (http:// when none is given) and no trailing slash.
func baseURL(target string) string {
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	return strings.TrimRight(target, "/")
}

// downloadBackup fetches GET /v1/backup from target into to, atomically: it
// writes to.tmp, fsyncs it, checks it is a whole Outpost database holding
// what the response headers say, and only then renames it to to.
func downloadBackup(ctx context.Context, target, token, to string) (store.BackupInfo, error) {
	url := baseURL(target) + "/v1/backup"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return store.BackupInfo{}, fmt.Errorf("--target %q: %w", target, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return store.BackupInfo{}, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return store.BackupInfo{}, fmt.Errorf("GET %s: HTTP %d %s: %s", url, resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		return store.BackupInfo{}, fmt.Errorf("GET %s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if ct := resp.Header.Get("Content-Type"); ct != api.BackupContentType {
		return store.BackupInfo{}, fmt.Errorf("GET %s: Content-Type %q, want %s (is this an Outpost node's API?)", url, ct, api.BackupContentType)
	}
	tmp := to + ".tmp"
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return store.BackupInfo{}, err
	}
	n, err := io.Copy(f, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return store.BackupInfo{}, fmt.Errorf("download %s to %s: %w", url, tmp, err)
	}
	info, err := store.VerifyBackup(ctx, tmp)
	if err != nil {
		return store.BackupInfo{}, err
	}
	if want := resp.Header.Get(api.BackupDBVersionHeader); want != "" && want != strconv.FormatInt(info.DBVersion, 10) {
		return store.BackupInfo{}, fmt.Errorf("the backup holds db_version %d, the node said %s", info.DBVersion, want)
	}
	if want := resp.Header.Get(api.BackupIncarnationHeader); want != "" && want != info.Incarnation {
		return store.BackupInfo{}, fmt.Errorf("the backup holds incarnation %s, the node said %s", info.Incarnation, want)
	}
	if err := os.Rename(tmp, to); err != nil {
		return store.BackupInfo{}, err
	}
	ok = true
	if d, err := os.Open(filepath.Dir(to)); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil && !errors.Is(err, os.ErrInvalid) {
			return info, fmt.Errorf("sync %s: %w", filepath.Dir(to), err)
		}
	}
	return info, nil
}
