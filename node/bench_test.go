package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/outpost-edge/outpost"
	"github.com/outpost-edge/outpost/node"
)

func openNode(tb testing.TB) *node.Node {
	tb.Helper()
	dir := tb.TempDir()
	schema := filepath.Join(dir, "schema.sql")
	if err := os.WriteFile(schema, []byte(`CREATE TABLE pages (id TEXT PRIMARY KEY NOT NULL, title TEXT, body TEXT);`), 0o644); err != nil {
		tb.Fatal(err)
	}
	n, err := node.Open(context.Background(), node.Config{
		DataDir: filepath.Join(dir, "data"), SchemaFile: schema, APIAddr: "127.0.0.1:0",
		Identity: outpost.Identity{Name: "EDGE01", Location: "LHR", Farm: "lhr", Role: outpost.RoleEdge, Code: "43ax"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	n.Serve()
	tb.Cleanup(func() { n.Close(context.Background()) })
	return n
}

func post(tb testing.TB, c *http.Client, url, body string) {
	resp, err := c.Post(url, "application/json", bytes.NewBufferString(body))
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		tb.Fatalf("%s: %d %s", url, resp.StatusCode, b)
	}
}

// BenchmarkNode_HTTP measures whole API round trips on loopback: a durable
// single-row write and a point read, at 1 and 16 concurrent clients.
func BenchmarkNode_HTTP(b *testing.B) {
	n := openNode(b)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := 0; i < 100; i++ {
		post(b, c, n.APIURL()+"/v1/exec", fmt.Sprintf(`{"statements":[{"sql":"INSERT INTO pages (id, title) VALUES (?, 't')","args":["r%d"]}]}`, i))
	}
	var seq atomic.Int64
	for _, conc := range []int{1, 16} {
		b.Run(fmt.Sprintf("write/c=%d", conc), func(b *testing.B) {
			before := n.Store.Stats()
			defer func() {
				after := n.Store.Stats()
				b.ReportMetric(float64(after.Transactions-before.Transactions)/float64(max(1, after.Groups-before.Groups)), "tx/group")
			}()
			b.SetParallelism(max(1, conc/2))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					post(b, c, n.APIURL()+"/v1/exec", fmt.Sprintf(`{"statements":[{"sql":"INSERT INTO pages (id, title) VALUES (?, 't')","args":["w%d"]}]}`, seq.Add(1)))
				}
			})
		})
		b.Run(fmt.Sprintf("read/c=%d", conc), func(b *testing.B) {
			b.SetParallelism(max(1, conc/2))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					post(b, c, n.APIURL()+"/v1/query", fmt.Sprintf(`{"sql":"SELECT id, title FROM pages WHERE id = ?","args":["r%d"]}`, seq.Add(1)%100))
				}
			})
		})
	}
}
