package relay

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// Message is one chat message as stored, forwarded and delivered.
type Message struct {
	ID      string          `json:"id"`             // MessageID(From, CID): the same at every edge
	CID     string          `json:"cid"`            // the client's message id (dedupe of retries)
	From    string          `json:"from"`           // sender user
	To      string          `json:"to,omitempty"`   // recipient user, or
	Room    string          `json:"room,omitempty"` // room
	Body    json.RawMessage `json:"body"`
	Node    string          `json:"node"`          // the sender's edge, which signed it
	HLC     int64           `json:"hlc"`           // that edge's clock at the commit: the cursor
	Created int64           `json:"created"`       // Unix ms
	Sig     []byte          `json:"sig,omitempty"` // ed25519 of signed() by Node
}

const msgDomain = "outpost-relay-msg\x00"

const idDomain = "outpost-relay-id\x00"

// idEncoding spells message IDs: lowercase base32, no padding.
var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// MessageID is the ID of the message the user sender sent with the client
// message id cid: "m" and 26 base32 characters of a SHA-256 of the pair
// (128 bits). It is derived, not drawn, so a retry of the same send at
// another edge, before the first edge's row replicated there, stores the
// same message: the two rows share their key (sender, cid) and their ID,
// and replication merges them into one (docs/RELAY.md, "IDs"). It is
// fleet-unique because (sender, cid) is the row's key.
func MessageID(sender, cid string) string {
	b := binary.AppendUvarint([]byte(idDomain), uint64(len(sender)))
	b = append(b, sender...)
	b = append(b, cid...)
	sum := sha256.Sum256(b)
	return "m" + strings.ToLower(idEncoding.EncodeToString(sum[:16]))
}

// signed returns the bytes a message's signature covers.
func (m *Message) signed() []byte {
	b := []byte(msgDomain)
	for _, s := range []string{m.ID, m.CID, m.From, m.To, m.Room, string(m.Body), m.Node} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(m.HLC))
	return binary.BigEndian.AppendUint64(b, uint64(m.Created))
}

// verify checks the message's signature against its node's key.
func (r *Relay) verify(m *Message) error {
	if err := r.cfg.Keys.Verify(m.Node, m.signed(), m.Sig); err != nil {
		return fmt.Errorf("message %s: signature of %s: %v: %w", m.ID, m.Node, err, ErrForged)
	}
	return nil
}

// SendRequest is the body of POST /v1/relay/send and of a "send" frame.
type SendRequest struct {
	To   string          `json:"to,omitempty"`
	Room string          `json:"room,omitempty"`
	ID   string          `json:"id"` // client message id
	Body json.RawMessage `json:"body"`
}

// Sent is the acknowledgement of a send: the message is durable.
type Sent struct {
	ID        string `json:"id"`     // client message id
	MsgID     string `json:"msg_id"` // outpost_id()
	HLC       int64  `json:"hlc"`
	Duplicate bool   `json:"duplicate,omitempty"` // a retry: the first send's answer
	// Online lists the nodes where the recipient (or a room member) was
	// connected when the message was sent; empty = kept for the retention.
	Online []string `json:"online"`
}

func (r *Relay) checkSend(in *SendRequest) error {
	if (in.To == "") == (in.Room == "") {
		return errorf(http.StatusBadRequest, "bad_recipient", "give exactly one of \"to\" (a user) or \"room\"")
	}
	if in.To != "" {
		if err := checkName("to", in.To); err != nil {
			return err
		}
	} else if err := checkName("room", in.Room); err != nil {
		return err
	}
	if err := checkName("id", in.ID); err != nil {
		return err
	}
	if len(in.Body) == 0 {
		return errorf(http.StatusBadRequest, "bad_body", "\"body\" is missing: any JSON value")
	}
	if len(in.Body) > r.cfg.MaxMessage {
		return errorf(http.StatusRequestEntityTooLarge, "message_too_large", "the body is %d bytes; the limit is %d (--relay-max-message)", len(in.Body), r.cfg.MaxMessage)
	}
	if !json.Valid(in.Body) {
		return errorf(http.StatusBadRequest, "bad_body", "\"body\" is not valid JSON")
	}
	return nil
}

// frames sent to clients.
type msgFrame struct {
	Type string `json:"type"` // "msg"
	*Message
}

type receiptFrame struct {
	Type  string `json:"type"` // "receipt"
	MsgID string `json:"msg_id"`
	CID   string `json:"id"`
	User  string `json:"user"`
	Kind  string `json:"kind"` // delivered | read
	At    int64  `json:"at"`
	// HLC is the receipt row's clock (the recipient's node at its commit):
	// a cursor like a message's hlc.
	HLC int64 `json:"hlc"`

	senderUser string
}

func encodeMsg(m *Message) []byte {
	c := *m
	c.Sig = nil
	b, _ := json.Marshal(msgFrame{Type: "msg", Message: &c})
	return b
}
