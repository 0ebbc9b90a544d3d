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
	asJSON := fs.Bool("json", false, "print the raw JSON of /v1/status (or /v1/fleet)")
	fleet := fs.Bool("fleet", false, "every node the target knows from its trust list (GET /v1/fleet): role, farm, state, db_version, lag, last seen, version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	path := "/v1/status"
	if *fleet {
		path = "/v1/fleet"
	}
	body, err := getAPI(ctx, *target, *token, path)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	if *fleet {
		return printFleet(stdout, body)
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
	fmt.Fprintf(stdout, "replication: applied %d, ignored %d, refused %d, held %d\n",
		st.Replication.Applied, st.Replication.Ignored, st.Replication.Refused, st.Replication.Held)
	ts := st.Tombstones
	kept := "?"
	if ts.Remaining >= 0 {
		kept = fmt.Sprint(ts.Remaining)
	}
	fmt.Fprintf(stdout, "tombstones: kept %s, collected %d since start", kept, ts.Collected)
	if len(ts.Waiting) > 0 {
		fmt.Fprintf(stdout, "; held back by: %s", strings.Join(ts.Waiting, "; "))
	}
	fmt.Fprint(stdout, "\n\n")
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

// getAPI GETs path from the node at target and returns the body of a 200.
func getAPI(ctx context.Context, target, token, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL(target)+path, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: HTTP %d: %s", target, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// printFleet prints GET /v1/fleet as a table, one line per node.
func printFleet(stdout io.Writer, body []byte) error {
	var f node.Fleet
	if err := json.Unmarshal(body, &f); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "fleet as seen by %s: %d nodes\n\n", f.Self, len(f.Nodes))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tFARM\tSTATE\tDB_VERSION\tLAG (VERSIONS)\tLAG (S)\tLAST SEEN\tVERSION\tSCHEMA\tREFUSED")
	for _, n := range f.Nodes {
		farm, dbv, lag, lagS, seen, version, schema := "core", "-", "-", "-", "-", "-", "-"
		if n.Farm != "" {
			farm = n.Farm
		}
		if n.DBVersion != nil {
			dbv = fmt.Sprint(*n.DBVersion)
		}
		if n.LagDBVersions != nil {
			lag = fmt.Sprint(*n.LagDBVersions)
		}
		if n.LagSeconds != nil {
			lagS = fmt.Sprintf("%.1f", *n.LagSeconds)
		}
		if n.LastSeenSecondsAgo != nil && !n.Self {
			seen = fmt.Sprintf("%.0fs ago", *n.LastSeenSecondsAgo)
		}
		if n.Version != "" {
			version = n.Version
		}
		if n.SameSchema != nil {
			schema = map[bool]string{true: "same", false: "DIFFERS"}[*n.SameSchema]
		}
		name := n.Name
		if n.Self {
			name += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", name, n.Role, farm, n.State, dbv, lag, lagS, seen, version, schema, n.RefusedChanges)
	}
	return tw.Flush()
}
