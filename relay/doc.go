// Package relay is the chat relay (docs/RELAY.md): users connect to any node
// over WebSocket (or Server-Sent Events), send messages to other users or to
// rooms, and receive them wherever they are connected.
//
// The path of a message:
//
//	client ─send─▶ sender's edge: durable row in outpost_relay_messages
//	                (ID derived from (sender, client id), signed by the
//	                edge) ─▶ ack to the client
//	            ─▶ presence (outpost_relay_presence, leased) names the
//	               recipient's node(s) ─▶ forward over the peer transport,
//	               through the core when the policy forbids a direct call
//	            ─▶ receiving node: push to the user's open connections
//
// Replication of the same row is the safety net: every node watches its
// store (Changed) and pushes newly arrived messages to the users connected
// to it, and a device that reconnects (anywhere) asks for what it missed
// (messages, and receipts of its user's messages) with a since cursor. Each connection suppresses a message it already got
// (by message ID), so the many paths are at-least-once and no client sees a
// message twice.
package relay
