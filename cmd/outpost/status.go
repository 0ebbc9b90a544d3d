package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-edge/outpost/node"
)

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr)
	target := fs.String("target", "http://127.0.0.1:7700", "API URL of the node (host:port means http://host:port)")
	token := fs.String("api-token", "", "bearer token of the node")
	asJSON := fs.Bool("json", false, "print the raw JSON of /v1/status")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL(*target)+"/v1/status", nil)
	if err != nil {
		return err
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d: %s", *target, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var st node.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return err
	}
	held := int64(0)
	for _, n := range st.Held {
		held += n
	}
	fmt.Fprintf(stdout, "%s (%s%s)  db_version %d  incarnation %s  held %d  slugs ready %v\n",
		st.Name, st.Role, farmSuffix(st.Farm), st.DBVersion, st.Incarnation, held, st.SlugsReady)
	fmt.Fprintf(stdout, "replication: applied %d, ignored %d, refused %d, held %d\n\n",
		st.Replication.Applied, st.Replication.Ignored, st.Replication.Refused, st.Replication.Held)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tROLE\tDIR\tUP\tCURSOR\tPEER DBV\tLAG (VERSIONS)\tLAG (S)\tCHANGES\tREFUSED\tLAST ERROR")
	for _, l := range st.Links {
		up := fmt.Sprint(l.Connected)
		if l.Standby {
			up = "standby"
		}
		lag, lagS := lagText(l)
		fmt.Fprintf(tw, "%s\t%s%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%s\n", l.Peer, l.Role, farmSuffix(l.Farm), l.Direction, up,
			l.Cursor, l.PeerDBVersion, lag, lagS, l.Applied, l.Refused, l.LastError)
	}
	tw.Flush()
	if len(st.Refusals) > 0 {
		fmt.Fprintln(stdout, "\nrefusals:")
		for _, r := range st.Refusals {
			fmt.Fprintf(stdout, "  %-20s %-40s %d\n", r.Kind, r.Detail, r.Count)
		}
	}
	if len(st.Refused) > 0 {
		fmt.Fprintln(stdout, "\nrefused changes:")
		for _, r := range st.Refused {
			fmt.Fprintf(stdout, "  from %-16s %-24s %-8d last claimed origin %s\n", r.Sender, r.Rule, r.Count, r.LastOrigin)
		}
	}
	return nil
}

// lagText returns a link's lag in db_versions and seconds, "-" for each
// while the link is down (unknown: the lag measured then would read 0).
func lagText(l node.Link) (versions, seconds string) {
	versions, seconds = "-", "-"
	if l.LagChanges != nil {
		versions = fmt.Sprint(*l.LagChanges)
	}
	if l.LagSeconds != nil {
		seconds = fmt.Sprintf("%.1f", *l.LagSeconds)
	}
	return versions, seconds
}

func farmSuffix(f string) string {
	if f == "" {
		return ""
	}
	return " " + f
}
