package relay

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Relay tokens: "ort1.<payload>.<signature>", both base64url without
// padding. The payload is JSON {"sub":user,"iss":node,"exp":unix seconds};
// the signature is the issuing node's ed25519 signature of
// "outpost-relay-token\x00" + payload, so any node of the fleet verifies it
// with the issuer's key from the trust list.
const (
	tokenPrefix  = "ort1."
	tokenDomain  = "outpost-relay-token\x00"
	maxTokenLen  = 2048
	maxUserLen   = 128
	maxTokenTTL  = 7 * 24 * time.Hour
	skewTolerant = 5 * time.Second
)

type tokenClaims struct {
	Sub string `json:"sub"`
	Iss string `json:"iss"`
	Exp int64  `json:"exp"`
}

// IssueToken returns a relay token for user, valid fleet-wide for ttl.
func (r *Relay) IssueToken(user string, ttl time.Duration) (string, time.Time, error) {
	if err := checkName("user", user); err != nil {
		return "", time.Time{}, err
	}
	if ttl <= 0 {
		ttl = r.cfg.TokenTTL
	}
	if ttl > maxTokenTTL {
		return "", time.Time{}, errorf(http.StatusBadRequest, "bad_ttl", "ttl_s is at most %d (7 days)", int(maxTokenTTL/time.Second))
	}
	exp := time.Now().Add(ttl).Truncate(time.Second)
	p, _ := json.Marshal(tokenClaims{Sub: user, Iss: r.cfg.Self, Exp: exp.Unix()})
	sig := r.cfg.Keys.Sign(append([]byte(tokenDomain), p...))
	enc := base64.RawURLEncoding
	return tokenPrefix + enc.EncodeToString(p) + "." + enc.EncodeToString(sig), exp, nil
}

// VerifyToken returns the user a relay token names, or an Error (401).
func (r *Relay) VerifyToken(tok string) (string, error) {
	bad := func(msg string) error { return errorf(http.StatusUnauthorized, "bad_token", "%s", msg) }
	if len(tok) > maxTokenLen || !strings.HasPrefix(tok, tokenPrefix) {
		return "", bad("not a relay token: get one from POST /v1/relay/tokens and pass it as ?token= or Authorization: Bearer")
	}
	p64, s64, ok := strings.Cut(tok[len(tokenPrefix):], ".")
	if !ok {
		return "", bad("malformed relay token")
	}
	enc := base64.RawURLEncoding
	p, err1 := enc.DecodeString(p64)
	sig, err2 := enc.DecodeString(s64)
	if err1 != nil || err2 != nil {
		return "", bad("malformed relay token (base64url)")
	}
	var c tokenClaims
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Sub == "" || c.Iss == "" {
		return "", bad("malformed relay token (claims)")
	}
	if err := r.cfg.Keys.Verify(c.Iss, append([]byte(tokenDomain), p...), sig); err != nil {
		return "", bad("relay token not signed by a node of this fleet: " + err.Error())
	}
	if time.Now().Add(-skewTolerant).Unix() > c.Exp {
		return "", bad("relay token expired; get a new one from POST /v1/relay/tokens")
	}
	return c.Sub, nil
}

// authenticate returns the user of a request: a relay token (?token= or
// Authorization: Bearer), or else Config.Authenticate (e.g. a JWT verified
// against the site's JWKS).
func (r *Relay) authenticate(req *http.Request) (string, error) {
	tok := req.URL.Query().Get("token")
	if tok == "" {
		if scheme, t, ok := strings.Cut(req.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") && strings.HasPrefix(strings.TrimSpace(t), tokenPrefix) {
			tok = strings.TrimSpace(t)
		}
	}
	if tok != "" {
		return r.VerifyToken(tok)
	}
	if r.cfg.Authenticate != nil {
		u, err := r.cfg.Authenticate(req)
		if err != nil {
			return "", errorf(http.StatusUnauthorized, "bad_token", "%v", err)
		}
		return u, checkName("user", u)
	}
	return "", errorf(http.StatusUnauthorized, "no_token", "no relay token: get one from POST /v1/relay/tokens and pass it as ?token= or Authorization: Bearer")
}

// checkName validates a user, room or client message id.
func checkName(what, s string) error {
	if s == "" {
		return errorf(http.StatusBadRequest, "bad_"+what, "%s is empty", what)
	}
	if len(s) > maxUserLen {
		return errorf(http.StatusBadRequest, "bad_"+what, "%s is longer than %d bytes", what, maxUserLen)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return errorf(http.StatusBadRequest, "bad_"+what, "%s has a control character", what)
		}
	}
	return nil
}
