// Package limiter is Outpost's global rate limiter: requests for a key are
// counted where they arrive (a POP) while the key is far from its limit, and
// decided by one owner once it is near.
//
// # Windows
//
// Windows are fixed and aligned to the Unix epoch: a request at Unix time t
// ms with window w ms counts in the window starting at t - t mod w, which
// ends (reset_ms) at that start + w. Every node computes the same windows
// from its own clock; a counter is the pair (key, window length), so
// {"key":"k","window":"1s"} and {"key":"k","window":"60s"} are two counters.
//
// # Decisions
//
// With P members (every node of the trust list, this one included), a POP
// admits up to T = floor(limit / P) of a key's cost per window on its own,
// with zero remote calls. The request that would pass T claims the key: it
// is sent, with the POP's count (its handover), to the key's arbiter, the
// core node (master or node) of highest rendezvous hash for the key among
// those this POP does not consider down (all members when the fleet has no
// core). The arbiter becomes the owner: it announces the ownership to every
// other member, which answers with its own count (handed over once) and from
// then on forwards the key's requests to the owner until the window ends.
//
// The owner reserves T for every member whose count it has not received yet
// and admits a request only if its count + the reservations + cost <= limit.
// With an admitted forward it may grant a lease, floor(left / P), counted as
// admitted at once, which the caller then admits locally with no call.
// Because no member ever admits more than T on its own, the admitted total
// of a window never exceeds the limit while the owner is up: the bound is
// exact, at the price of refusing early while announces are unanswered.
//
// Two POPs claiming at once send their claims to the same arbiter, which
// serializes them: one owner, both counts added. If members disagree on
// which core nodes are up and claim at two arbiters, the one of higher
// rendezvous rank keeps the key and the other hands its whole count over.
//
// # Owner loss
//
// A call to the owner that fails or takes longer than CallTimeout (1 s) puts
// the POP in fallback for that key until the window ends: it counts locally
// again with a budget of floor(R / P), where R is the remaining budget the
// owner last reported to this POP (0 if it never answered), and marks the
// owner down for DownFor (2 s) so its other keys fall back at once and new
// claims go to the next arbiter. A window in which the owner dies admits at
// most limit + max R over the POPs, <= 2 x limit; see docs/ARCHITECTURE.md.
//
// # Memory
//
// The key table is sharded and bounded (MaxKeys); counters of past windows
// are swept as shards grow. When a shard is full of live counters, a new key
// is refused (ErrFull) rather than admitted unaccounted.
package limiter
