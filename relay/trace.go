package relay

import "time"

// Stage names a point of a message's path, for a tracer (SetTracer): the
// bench (`outpost bench --suite relay`) uses it to show where the time of
// a message goes between its send and its receipt at the client.
type Stage uint8

// The stages, in path order.
const (
	StageRecv         Stage = iota // sender's edge: the send was read from the client
	StageDurable                   // sender's edge: committed (fsync)
	StageDispatched                // sender's edge: presence resolved, forwards queued
	StageForwardStart              // sender's edge: the forwarder took the message's batch and calls
	StageForwardIn                 // a node (the target, or a core node passing it on) got the forward
	StageForwardDone               // sender's edge: the forward call answered
	StageWatchSeen                 // a node's store watcher read the row (replication path)
	StageQueued                    // a node queued the frame on a connection (the first time)
	StageWritten                   // a node wrote the frame to the connection's socket
	numStages
)

var stageNames = [numStages]string{"recv", "durable", "dispatched", "forward_start", "forward_in", "forward_done", "watch_seen", "queued", "written"}

func (s Stage) String() string {
	if s < numStages {
		return stageNames[s]
	}
	return "stage?"
}

// Tracer observes a message (by ID) reaching a stage at this node.
type Tracer func(node string, st Stage, msgID string, at time.Time)

// SetTracer installs (or with nil removes) a tracer. Without one a stage
// costs an atomic load.
func (r *Relay) SetTracer(t Tracer) {
	if t == nil {
		r.tracer.Store(nil)
		return
	}
	r.tracer.Store(&t)
}

func (r *Relay) trace(st Stage, msgID string) {
	if t := r.tracer.Load(); t != nil {
		(*t)(r.cfg.Self, st, msgID, time.Now())
	}
}
