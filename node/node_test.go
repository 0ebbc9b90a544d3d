package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/node"
)

func openWithSchema(tb testing.TB, role outpost.Role, ddl string) (*node.Node, error) {
	tb.Helper()
	dir := tb.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(ddl), 0o644); err != nil {
		tb.Fatal(err)
	}
	farm := ""
	if role == outpost.RoleEdge {
		farm = "lhr"
	}
	n, err := node.Open(context.Background(), node.Config{
		DataDir: filepath.Join(dir, "data"), SchemaFile: schema, APIAddr: "127.0.0.1:0",
		Identity: outpost.Identity{Name: "X1", Location: "LHR", Farm: farm, Role: role, Code: "12ab"},
	})
	if err == nil {
		n.Serve()
		tb.Cleanup(func() { n.Close(context.Background()) })
	}
	return n, err
}

const permSchema = `
-- outpost: table prices writable by master, node
CREATE TABLE prices (id TEXT PRIMARY KEY NOT NULL, amount INTEGER);
CREATE TABLE comments (id TEXT PRIMARY KEY NOT NULL, body TEXT);
`

// TestNode_TablePermissions: the table write permissions declared next to
// the schema apply to the node's own API too.
func TestNode_TablePermissions(t *testing.T) {
	for _, tc := range []struct {
		role      outpost.Role
		wantPrice int
	}{{outpost.RoleEdge, http.StatusForbidden}, {outpost.RoleNode, http.StatusOK}, {outpost.RoleMaster, http.StatusOK}} {
		t.Run(string(tc.role), func(t *testing.T) {
			n, err := openWithSchema(t, tc.role, permSchema)
			if err != nil {
				t.Fatal(err)
			}
			exec := func(sql string) (int, string) {
				body, _ := json.Marshal(map[string]any{"statements": []map[string]any{{"sql": sql}}})
				resp, err := http.Post(n.APIURL()+"/v1/exec", "application/json", bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, body := exec(`INSERT INTO comments (id, body) VALUES ('c1', 'hi')`); code != http.StatusOK {
				t.Fatalf("comments: %d %s", code, body)
			}
			code, body := exec(`INSERT INTO prices (id, amount) VALUES ('p1', 10)`)
			if code != tc.wantPrice {
				t.Fatalf("prices: %d %s, want %d", code, body, tc.wantPrice)
			}
			if code == http.StatusForbidden && (!strings.Contains(body, `"not_allowed"`) || !strings.Contains(body, `may not write table \"prices\"`)) {
				t.Fatalf("refusal does not name the rule: %s", body)
			}
		})
	}
	t.Run("directive for a table the schema lacks", func(t *testing.T) {
		_, err := openWithSchema(t, outpost.RoleEdge, "-- outpost: table pricez writable by master\n"+permSchema)
		if err == nil || !strings.Contains(err.Error(), `"pricez"`) {
			t.Fatalf("err = %v, want a refusal naming pricez", err)
		}
	})
}
