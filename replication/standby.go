package replication

import (
	"hash/fnv"
	"slices"
	"time"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/policy"
)

// An edge pulls everything it does not get from its farm siblings through
// one hub, its preferred one; the pull loops to its other hubs stand by and
// run only while the preferred link is down or lagging (docs/ARCHITECTURE.md,
// "Sources"). Hubs relay to each other, so one hub brings every change; an
// edge pulling from every hub got each change once per hub.
//
// Falling back is safe in protocol 1: a pull from a cursor left behind
// brings the current state of every row changed since, so a standby that
// starts late loses nothing, it only catches up.

// Standby timing.
const (
	// standbyAfter is how long the preferred link must be unhealthy before
	// a standby link starts pulling.
	standbyAfter = 2 * time.Second
	// standbyRelease is how long the preferred link must be healthy again
	// before a running standby link stops.
	standbyRelease = 10 * time.Second
	// standbyMaxLag is the lag beyond which the preferred link counts as
	// unhealthy though connected.
	standbyMaxLag = 10 * time.Second
	standbyPoll   = 200 * time.Millisecond
)

// isHub reports whether p relays for everyone (masters and nodes).
func isHub(p identity.Peer) bool {
	return p.Role == outpost.RoleMaster || p.Role == outpost.RoleNode
}

// preferredHub returns, for an edge, the name of the hub among its pull
// targets it pulls from, or "" when it has fewer than two (nothing stands
// by). The choice is deterministic and spreads edges over hubs.
func preferredHub(self outpost.Identity, pull []identity.Peer) string {
	if self.Role != outpost.RoleEdge {
		return ""
	}
	var hubs []string
	for _, p := range pull {
		if isHub(p) {
			hubs = append(hubs, p.Name)
		}
	}
	if len(hubs) < 2 {
		return ""
	}
	slices.Sort(hubs)
	h := fnv.New32a()
	h.Write([]byte(self.Name))
	return hubs[int(h.Sum32()%uint32(len(hubs)))]
}

// standbyFor returns the key of the loop a pull loop to p stands by for,
// or "".
func (r *Replicator) standbyFor(p identity.Peer, a policy.Action, preferred string) string {
	if a != policy.Pull || preferred == "" || !isHub(p) || p.Name == preferred {
		return ""
	}
	return preferred + "/pull"
}

// preferredHealthy reports whether the loop a standby loop stands by for
// is connected and not lagging.
func (l *loop) preferredHealthy() bool {
	l.r.mu.Lock()
	p := l.r.loops[l.standby]
	l.r.mu.Unlock()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	lag := time.Duration(0)
	if !p.st.behindSince.IsZero() {
		lag = time.Since(p.st.behindSince)
	}
	return p.st.Connected && lag <= standbyMaxLag
}

// awaitNeed blocks a standby loop until the preferred link has been
// unhealthy for standbyAfter; false when the loop ends meanwhile.
func (l *loop) awaitNeed() bool {
	l.update(func(s *LinkStatus) { s.Standby = true })
	var since time.Time
	for {
		if l.preferredHealthy() {
			since = time.Time{}
		} else if since.IsZero() {
			since = time.Now()
		} else if time.Since(since) >= standbyAfter {
			l.update(func(s *LinkStatus) { s.Standby = false })
			l.r.log.Info("sync: preferred hub unavailable; pulling from a standby hub", "peer", l.peer.Name, "preferred", l.standby)
			return true
		}
		if !l.r.sleep(l.ctx, standbyPoll) {
			return false
		}
	}
}

// releaseWhenPreferred ends the standby loop's current stream once the
// preferred link has been healthy for standbyRelease; it returns when done
// is closed.
func (l *loop) releaseWhenPreferred(done <-chan struct{}) {
	var since time.Time
	t := time.NewTicker(standbyPoll)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if l.released.Load() {
			l.reconnect() // until the stream, perhaps still starting, ends
			continue
		}
		if !l.preferredHealthy() {
			since = time.Time{}
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) >= standbyRelease {
			l.released.Store(true)
			l.r.log.Info("sync: preferred hub is back; standby hub stands by again", "peer", l.peer.Name, "preferred", l.standby)
			l.reconnect()
		}
	}
}
