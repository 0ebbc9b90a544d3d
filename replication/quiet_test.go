package replication

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/internal/testutil"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/store"
	"github.com/outpost-edge/outpost/wire"
)

// TestPull_IdleSaysNoHellos: a connected, idle pull loop says hello once
// (on connect, with its stored cursor as the ack) and then only when its
// cursor moves; the stream stays open through many heartbeats of silence
// because the watchdog follows the heartbeat the peer announces.
func TestPull_IdleSaysNoHellos(t *testing.T) {
	st := newFakeStore()
	st.cursors["PEER1/pull"] = [2]any{int64(5), "p1"}
	tr := newScript(peerHello("p1", 9))
	tr.header = http.Header{HeaderHeartbeatMax: {"60000"}}
	r := testReplicator(t, selfID, st, tr, func(c *Config) {
		c.Heartbeat = 10 * time.Millisecond
		c.HelloInterval = time.Hour
	})
	runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	if q := tr.dials()[0]; q.Get("quiet") != "1" || q.Get("since") != "5" {
		t.Fatalf("dial query %v: want quiet=1 since=5", q)
	}
	if qs := tr.helloQueries(); len(qs) != 1 || qs[0].Get("pulled") != "5" || qs[0].Get("incarnation") != "p1" {
		t.Fatalf("connect hellos %v: want one carrying pulled=5&incarnation=p1", qs)
	}
	time.Sleep(30 * 10 * time.Millisecond) // 30 heartbeats, well past 4 without a frame
	if s.ctx.Err() != nil {
		t.Fatal("the watchdog dropped a stream whose peer announced a long heartbeat")
	}
	if n := len(tr.helloQueries()); n != 1 {
		t.Fatalf("%d hellos on an idle link, want only the connect hello", n)
	}

	// The cursor moves: one ack goes out.
	s.send(t, wire.GroupFrame(group(8, "a")), wire.ProgressFrame(9))
	eventually(t, "the ack of the new cursor", func() bool {
		qs := tr.helloQueries()
		return len(qs) == 2 && qs[1].Get("pulled") == "9" && qs[1].Get("incarnation") == "p1"
	})
	time.Sleep(20 * 10 * time.Millisecond)
	if n := len(tr.helloQueries()); n != 2 {
		t.Fatalf("%d hellos, want no more once the ack went", n)
	}
	if len(tr.dials()) != 1 {
		t.Fatalf("%d dials: the stream was dropped", len(tr.dials()))
	}
}

// TestPull_HelloBackstop: an idle link still says hello every
// HelloInterval (with its ack), and drops the stream when the answer shows
// a new incarnation.
func TestPull_HelloBackstop(t *testing.T) {
	st := newFakeStore()
	tr := newScript(peerHello("p1", 0))
	tr.header = http.Header{HeaderHeartbeatMax: {"60000"}}
	r := testReplicator(t, selfID, st, tr, func(c *Config) {
		c.Heartbeat = 10 * time.Millisecond
		c.HelloInterval = 50 * time.Millisecond
	})
	runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	eventually(t, "backstop hellos", func() bool { return len(tr.helloQueries()) >= 3 })
	for _, q := range tr.helloQueries()[1:] {
		if q.Get("pulled") != "0" || q.Get("incarnation") != "p1" {
			t.Fatalf("backstop hello %v: want the ack", q)
		}
	}
	tr.mu.Lock()
	tr.hello = peerHello("p2", 0)
	tr.mu.Unlock()
	<-s.ctx.Done()
	tr.next(t)
}

// TestPull_WatchdogFollowsAnnouncedHeartbeat: the watchdog allows four of
// the heartbeats the peer announces, not four of this node's.
func TestPull_WatchdogFollowsAnnouncedHeartbeat(t *testing.T) {
	st := newFakeStore()
	tr := newScript(peerHello("p1", 0))
	tr.header = http.Header{HeaderHeartbeatMax: {"100"}}
	r := testReplicator(t, selfID, st, tr, func(c *Config) {
		c.Heartbeat = 10 * time.Millisecond
		c.HelloInterval = time.Hour
	})
	runLoop(r, peer1, policy.Pull)
	s := tr.next(t)
	time.Sleep(200 * time.Millisecond) // 20 of this node's heartbeats, 2 of the peer's
	if s.ctx.Err() != nil {
		t.Fatal("dropped before four announced heartbeats of silence")
	}
	<-s.ctx.Done() // silent past four announced heartbeats: dropped
	tr.next(t)
}

// TestPullAcks_FollowApplies: the peer learns this node's pull cursor
// after each apply, without the per-heartbeat hellos of protocol 1.
func TestPullAcks_FollowApplies(t *testing.T) {
	ida, idb := ident("MASTER01", "01ma", outpost.RoleMaster), ident("NODE01", "02no", outpost.RoleNode)
	a := newMember(t, ida, testutil.OpenStore(t, "", store.Options{Identity: ida.Identity}), nil)
	b := newMember(t, idb, testutil.OpenStore(t, "", store.Options{Identity: idb.Identity}), func(c *Config) { c.HelloInterval = time.Hour })
	connect(b, a)
	runLoop(b.r, ida, "pull")
	for i, id := range []string{"p1", "p2"} {
		exec(t, a.st, `INSERT INTO pages (id, title) VALUES (?, 'x')`, id)
		want := a.st.DBVersion()
		eventually(t, "A has B's ack of write "+id, func() bool {
			acks := a.r.PullAcks()
			return len(acks) == 1 && acks[0].Peer == "NODE01" && acks[0].Role == "node" &&
				acks[0].Incarnation == a.st.Incarnation() && acks[0].Through == want
		})
		if n := b.r.Traffic().Hellos; n > int64(2+i) {
			t.Fatalf("%d hellos after %d writes: want the connect hello and one ack per apply at most", n, i+1)
		}
	}
}

// openStream opens a pull stream from b to a with query extra, served by
// a's replicator; it ends with ctx.
func openStream(t *testing.T, ctx context.Context, b, a *member, extra string) (*http.Response, *wire.Reader) {
	t.Helper()
	path := ChangesPath + "?since=0&origin=" + b.id.Name + "/" + b.st.Incarnation() + extra
	resp, err := b.tr.Do(ctx, a.id.Name, policy.Pull, http.MethodGet, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp, wire.NewReader(bufio.NewReader(resp.Body), wire.DefaultLimits)
}

// TestServe_QuietHeartbeats: a puller that asks with quiet=1 gets the
// longest heartbeat announced and heartbeats that grow while idle; one that
// does not (protocol 1) gets neither.
func TestServe_QuietHeartbeats(t *testing.T) {
	ida, idb := ident("MASTER01", "01ma", outpost.RoleMaster), ident("NODE01", "02no", outpost.RoleNode)
	a := newMember(t, ida, testutil.OpenStore(t, "", store.Options{Identity: ida.Identity}), func(c *Config) {
		c.Heartbeat, c.MaxHeartbeat = 10*time.Millisecond, 80*time.Millisecond
	})
	b := newMember(t, idb, testutil.OpenStore(t, "", store.Options{Identity: idb.Identity}), nil)
	connect(b, a)
	heartbeats := func(extra string) (http.Header, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 800*time.Millisecond)
		defer cancel()
		resp, rd := openStream(t, ctx, b, a, extra)
		n := 0
		for {
			f, err := rd.Read()
			if err != nil {
				return resp.Header, n
			}
			if f.Type == wire.FrameHeartbeat {
				n++
			}
		}
	}
	hdr, quiet := heartbeats("&quiet=1")
	if got := hdr.Get(HeaderHeartbeatMax); got != "80" {
		t.Fatalf("%s = %q, want 80", HeaderHeartbeatMax, got)
	}
	hdr, loud := heartbeats("")
	if got := hdr.Get(HeaderHeartbeatMax); got != "" {
		t.Fatalf("%s = %q to a puller that did not ask", HeaderHeartbeatMax, got)
	}
	// Counts, not timing: growing heartbeats are a fraction of fixed ones.
	t.Logf("heartbeats in 800ms: quiet %d, fixed %d", quiet, loud)
	if quiet == 0 || 2*quiet > loud {
		t.Fatalf("quiet stream had %d heartbeats, fixed %d: want quiet well under half", quiet, loud)
	}
}

// TestServe_EndsOnNewIncarnation: a served stream ends with an
// incarnation_changed error when this node takes a new incarnation, so the
// puller (which no longer says hello every heartbeat) starts over at once.
func TestServe_EndsOnNewIncarnation(t *testing.T) {
	ida, idb := ident("MASTER01", "01ma", outpost.RoleMaster), ident("NODE01", "02no", outpost.RoleNode)
	a := newMember(t, ida, testutil.OpenStore(t, "", store.Options{Identity: ida.Identity}), func(c *Config) { c.Heartbeat = time.Hour })
	b := newMember(t, idb, testutil.OpenStore(t, "", store.Options{Identity: idb.Identity}), nil)
	connect(b, a)
	exec(t, a.st, `INSERT INTO pages (id, title) VALUES ('p1', 'x')`)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, rd := openStream(t, ctx, b, a, "&quiet=1")
	if f, err := rd.Read(); err != nil || f.Type != wire.FrameGroup {
		t.Fatalf("first frame %v, %v: want the group", f.Type, err)
	}
	if f, err := rd.Read(); err != nil || f.Type != wire.FrameProgress {
		t.Fatalf("second frame %v, %v: want progress", f.Type, err)
	}
	if _, err := a.st.RotateIncarnation(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	f, err := rd.Read()
	if err != nil || f.Type != wire.FrameError || !strings.Contains(f.Message, "incarnation_changed") {
		t.Fatalf("after the new incarnation: frame %v %q, %v; want an incarnation_changed error", f.Type, f.Message, err)
	}
	if _, err := rd.Read(); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the stream did not end after the error: %v", err)
	}
}
