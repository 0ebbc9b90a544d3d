package site

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Auth verifies signed tokens (JWT) at the edge against a JWKS file: the
// signature (EdDSA/ed25519, RS256, PS256, ES256; never "none"), exp (which
// must be present), nbf, iss and aud.
type Auth struct {
	keys     jose.JSONWebKeySet
	issuer   string
	audience string
	cookie   string
	leeway   time.Duration
}

// AuthError is a refused token: Status is 401 (no token or a bad one) or
// 403 (a good token whose claims the route does not accept).
type AuthError struct {
	Status int
	Reason string
}

func (e *AuthError) Error() string { return e.Reason }

var algs = []jose.SignatureAlgorithm{jose.EdDSA, jose.RS256, jose.PS256, jose.ES256}

func loadAuth(dir string, c *authConfig) (*Auth, error) {
	if c.JWKS == "" {
		return nil, errors.New(`auth: "jwks" names the key file (JWKS JSON, relative to the site directory)`)
	}
	if c.Issuer == "" || c.Audience == "" {
		return nil, errors.New(`auth: "issuer" and "audience" are required: tokens are checked against both`)
	}
	path := c.JWKS
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: jwks: %w", err)
	}
	a := &Auth{issuer: c.Issuer, audience: c.Audience, cookie: c.Cookie, leeway: 30 * time.Second}
	if err := json.Unmarshal(b, &a.keys); err != nil {
		return nil, fmt.Errorf("auth: jwks %s: %w", path, err)
	}
	if len(a.keys.Keys) == 0 {
		return nil, fmt.Errorf("auth: jwks %s holds no keys", path)
	}
	for i, k := range a.keys.Keys {
		if !k.Valid() || !k.IsPublic() {
			return nil, fmt.Errorf("auth: jwks %s: key %d (kid %q) is not a valid public key", path, i, k.KeyID)
		}
	}
	if c.Leeway != "" {
		if a.leeway, err = time.ParseDuration(c.Leeway); err != nil || a.leeway < 0 {
			return nil, fmt.Errorf("auth: leeway %q is not a duration such as \"30s\"", c.Leeway)
		}
	}
	return a, nil
}

// token finds the request's token: Authorization: Bearer, else the cookie.
func (a *Auth) token(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	if a.cookie != "" {
		if c, err := r.Cookie(a.cookie); err == nil {
			return c.Value
		}
	}
	return ""
}

// Verify checks the request's token and returns its claims.
func (a *Auth) Verify(r *http.Request, now time.Time) (map[string]any, error) {
	raw := a.token(r)
	if raw == "" {
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: "this page needs a signed token (Authorization: Bearer or the session cookie)"}
	}
	if len(raw) > 16<<10 {
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: "token too large"}
	}
	tok, err := jwt.ParseSigned(raw, algs)
	if err != nil {
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: "malformed token or algorithm not accepted: " + err.Error()}
	}
	var keys []jose.JSONWebKey
	if kid := tok.Headers[0].KeyID; kid != "" {
		keys = a.keys.Key(kid)
	} else {
		keys = a.keys.Keys
	}
	var std jwt.Claims
	var all map[string]any
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != tok.Headers[0].Algorithm {
			continue
		}
		if err := tok.Claims(k.Key, &std, &all); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: "token signature does not match any key of the site's JWKS"}
	}
	if std.Expiry == nil {
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: "token has no exp"}
	}
	err = std.ValidateWithLeeway(jwt.Expected{Issuer: a.issuer, AnyAudience: jwt.Audience{a.audience}, Time: now}, a.leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: "token expired"}
	case errors.Is(err, jwt.ErrNotValidYet):
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: "token not valid yet (nbf)"}
	case errors.Is(err, jwt.ErrInvalidAudience):
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: "token is for another audience"}
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: "token from another issuer"}
	case err != nil:
		return nil, &AuthError{Status: http.StatusUnauthorized, Reason: err.Error()}
	}
	return all, nil
}

// checkClaims applies a route's required claims: each must equal the
// given value, or, for an array claim, contain it.
func checkClaims(claims map[string]any, want map[string]string) error {
	for k, v := range want {
		switch c := claims[k].(type) {
		case string:
			if c == v {
				continue
			}
		case []any:
			ok := false
			for _, x := range c {
				if s, _ := x.(string); s == v {
					ok = true
				}
			}
			if ok {
				continue
			}
		default:
			if c != nil && fmt.Sprint(c) == v {
				continue
			}
		}
		return &AuthError{Status: http.StatusForbidden, Reason: fmt.Sprintf("the token's %q claim does not allow this page", k)}
	}
	return nil
}
