package node

import (
	"cmp"
	"context"
	"fmt"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/admission"
	"github.com/outpost-edge/outpost/identity"
	"github.com/outpost-edge/outpost/peer"
	"github.com/outpost-edge/outpost/policy"
	"github.com/outpost-edge/outpost/replication"
	"github.com/outpost-edge/outpost/trust"
)

// openPeers loads the trust list and policy and binds the peer listener.
func (n *Node) openPeers() error {
	n.Policy = policy.Default()
	if n.cfg.PolicyFile != "" {
		over, err := policy.LoadOverrides(n.cfg.PolicyFile)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		n.Policy = n.Policy.With(over)
	}
	if n.Trust == nil {
		return nil
	}
	ts := n.Trust
	ts.OnChange(n.onTrustChange)
	cfg := peer.Config{
		Self: identity.Peer{Identity: n.Identity, Key: n.Key.Public()}, Key: n.Key,
		Trust: ts, Policy: n.Policy, Logger: n.log.With("component", "peer"),
		ReadHeaderTimeout: n.cfg.PeerReadHeaderTimeout, ReadTimeout: n.cfg.PeerReadTimeout, IdleTimeout: n.cfg.PeerIdleTimeout,
	}
	var err error
	if n.Peers, err = peer.NewServer(cfg); err != nil {
		return err
	}
	if n.Client, err = peer.NewClient(cfg); err != nil {
		return err
	}
	n.Peers.HandleHello(n.hello)
	n.Repl = replication.New(replication.Config{
		Self: n.Identity, Store: n.Store, Trust: ts, Policy: n.Policy, Client: n.Client, Hello: n.hello,
		Logger: n.log.With("component", "sync"), PushAll: n.cfg.PushAll, Refusals: n.Peers.Refusals,
		MaxStreams: n.cfg.MaxStreams, MaxStreamsPerPeer: n.cfg.MaxStreamsPerPeer, MaxPushBytes: n.cfg.MaxPushBytes,
		LogRetention: n.cfg.LogRetention, CollectEvery: n.cfg.LogCollectEvery, TombstoneEvery: n.cfg.TombstoneEvery,
		// Called the first time a pull has caught up, and again after each
		// new incarnation the store takes (a restored database): from the
		// rotation on the store refuses outpost_slug() (the writes it lost
		// may hold slugs it no longer knows) until a pull started under the
		// new incarnation has caught up, which brings them back.
		OnCaughtUp: func() {
			if !n.Store.SlugsReady() {
				n.log.Info("caught up with an upstream peer: issuing slugs", "incarnation", n.Store.Incarnation())
			}
			n.caughtUp.Store(true)
			n.Store.SetSlugsReady(true)
		},
	})
	n.Repl.Routes(n.Peers)
	if pull, _ := n.Repl.Targets(); n.Store.NewIncarnation() && len(pull) > 0 {
		// A database created empty may be a node rebuilt under an old
		// name: until it has caught up with a peer it cannot know which
		// slugs it issued in its earlier life.
		n.Store.SetSlugsReady(false)
		n.log.Info("new incarnation: slugs wait until the first pull has caught up", "peers", len(pull))
	}
	addr := n.cfg.PeerAddr
	if addr == "" {
		addr = ":7701"
	}
	return n.Peers.Listen(addr)
}

func (n *Node) closePeers(ctx context.Context) error {
	if n.Client != nil {
		n.Client.Close()
	}
	if n.Peers != nil {
		return n.Peers.Close(ctx)
	}
	return nil
}

func (n *Node) hello() peer.Hello {
	return peer.Hello{
		Name: n.Identity.Name, Role: string(n.Identity.Role), Farm: n.Identity.Farm,
		Location: n.Identity.Location, Code: n.Identity.Code, Key: identity.EncodePublicKey(n.Key.Public()),
		Protocol: cmp.Or(n.cfg.Protocol, outpost.ProtocolVersion), MinProtocol: cmp.Or(n.cfg.MinProtocol, outpost.MinProtocolVersion),
		SchemaVersion: n.Store.Schema().Version, Incarnation: n.Store.Incarnation(),
		DBVersion: n.Store.DBVersion(), Version: outpost.Version, Features: replication.Features(),
	}
}

// PeerAddr returns the peer listener's address, or "" without a trust list.
func (n *Node) PeerAddr() string {
	if n.Peers == nil {
		return ""
	}
	return n.Peers.Addr()
}

// ReloadTrust re-reads the trust list (on SIGHUP). A key that is removed
// loses access at once, open streams included. On error the old list stays.
func (n *Node) ReloadTrust() error {
	if n.Trust == nil {
		return fmt.Errorf("no trust list configured (--trust)")
	}
	d, err := n.Trust.Reload()
	if err != nil {
		n.log.Error("trust list reload failed; keeping the old list", "err", err)
		return err
	}
	n.log.Info("trust list reloaded", "added", len(d.Added), "removed", len(d.Removed), "changed", len(d.Changed), "peers", n.Trust.List().Len())
	return nil
}

// openGate loads the trust list (if the node has one) and builds the
// admission gate that judges every change received from a peer.
func openGate(cfg Config, id outpost.Identity, key *identity.Key, perms *policy.Permissions) (*trust.Store, *admission.Gate, error) {
	var ts *trust.Store
	if cfg.TrustFile != "" {
		var err error
		if ts, err = trust.NewStore(cfg.TrustFile, id, key.Public()); err != nil {
			return nil, nil, fmt.Errorf("trust list: %w", err)
		}
	}
	gate := admission.New(admission.Config{
		Self:  id,
		Perms: perms,
		Trust: func() admission.Directory {
			if ts == nil {
				return nil
			}
			return ts.List()
		},
	})
	return ts, gate, nil
}

// onTrustChange judges again the changes held because their origin was not
// on the trust list: the new list may name it.
func (n *Node) onTrustChange(trust.Diff) {
	go func() {
		res, err := n.Store.Recheck(context.Background(), admission.RuleOriginUnknown)
		if err != nil {
			n.log.Warn("trust list reload: recheck held changes", "err", err)
			return
		}
		if res.Applied+res.Ignored+res.Refused > 0 {
			n.log.Info("trust list reload: judged held changes again", "applied", res.Applied, "ignored", res.Ignored, "refused", res.Refused, "still_held", res.Held)
		}
	}()
}
