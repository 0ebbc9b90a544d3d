// Package purge turns committed changes into cache invalidations: it
// follows the store's change feed and, for every group a commit adds
// (locally or by replication), purges the cache entries tagged with the
// changed tables and rows, and applies the purge requests of the
// replicated outpost_purges table (POST /v1/purge on any node), then
// records that this node applied them (outpost_purge_acks). See
// docs/SITE.md.
package purge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/outpost-edge/outpost/edgecache"
)

// Request is a purge: surrogate keys, URLs, or everything; Soft marks the
// entries stale instead of dropping them.
type Request struct {
	Keys []string `json:"keys,omitempty"`
	URLs []string `json:"urls,omitempty"`
	All  bool     `json:"all,omitempty"`
	Soft bool     `json:"soft,omitempty"`
}

// Limits of one purge request.
const (
	MaxItems   = 1000 // keys + urls
	MaxKeySize = 1024 // bytes of one key or URL
)

// ErrBadRequest is wrapped by Validate's errors.
var ErrBadRequest = errors.New("bad purge request")

// Validate checks r and normalizes its URLs to request URIs (path and
// query; scheme and host dropped).
func (r *Request) Validate() error {
	if !r.All && len(r.Keys) == 0 && len(r.URLs) == 0 {
		return fmt.Errorf(`%w: give "keys", "urls" or "all":true`, ErrBadRequest)
	}
	if len(r.Keys)+len(r.URLs) > MaxItems {
		return fmt.Errorf("%w: at most %d keys and urls in one purge; send several", ErrBadRequest, MaxItems)
	}
	for _, k := range r.Keys {
		if k == "" || len(k) > MaxKeySize || strings.ContainsAny(k, " \t\r\n") {
			return fmt.Errorf("%w: key %.40q: a surrogate key is 1 to %d bytes without spaces", ErrBadRequest, k, MaxKeySize)
		}
	}
	for i, u := range r.URLs {
		n, err := NormalizeURL(u)
		if err != nil {
			return fmt.Errorf("%w: url %.60q: %v", ErrBadRequest, u, err)
		}
		r.URLs[i] = n
	}
	return nil
}

// NormalizeURL returns the request URI (path and query) of an absolute URL
// or of a path: what the cache keys entries by.
func NormalizeURL(s string) (string, error) {
	if s == "" || len(s) > MaxKeySize {
		return "", fmt.Errorf("a URL is 1 to %d bytes", MaxKeySize)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme == "" && !strings.HasPrefix(s, "/") {
		return "", errors.New(`give a path ("/pages/x") or an absolute URL`)
	}
	return u.RequestURI(), nil
}

// Tags returns the cache tags r purges (All aside).
func (r *Request) Tags() []string {
	tags := append([]string{}, r.Keys...)
	for _, u := range r.URLs {
		tags = append(tags, edgecache.URLTag(u))
	}
	return tags
}

// Decode parses a stored request.
func Decode(body string) (Request, error) {
	var r Request
	err := json.Unmarshal([]byte(body), &r)
	return r, err
}

// TableTag is the surrogate key of everything read from table.
func TableTag(table string) string { return strings.ToLower(table) }

// RowTag is the surrogate key of a row: TABLE/PK, the key values joined
// with "/" (strings as they are, numbers in decimal, blobs in hex).
func RowTag(table string, pk []any) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(table))
	for _, v := range pk {
		b.WriteByte('/')
		b.WriteString(formatValue(v))
	}
	return b.String()
}

func formatValue(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []byte:
		return fmt.Sprintf("%x", x)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}
