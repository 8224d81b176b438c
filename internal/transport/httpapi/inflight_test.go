package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onnxserve/onnxserve/internal/transport/guard"
)

// waitInUse waits until the budget holds want bytes.
func waitInUse(t *testing.T, b *guard.Budget, want int64) {
	t.Helper()
	deadline := time.After(testTimeout)
	for b.InUse() != want {
		select {
		case <-deadline:
			t.Fatalf("budget holds %d bytes, want %d", b.InUse(), want)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestHeaderOnlyBodiesReserveLittle: requests that declare a 64 MiB body
// and send a few bytes of it hold a small first chunk each, not their
// declared length; a good client is served meanwhile, and the bytes come
// back once they are gone.
func TestHeaderOnlyBodiesReserveLittle(t *testing.T) {
	budget := guard.NewBudget(1 << 30)
	e := newEnv(t, Config{Budget: budget})
	const n = 64
	var conns []net.Conn
	for range n {
		c, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 67108863\r\n\r\n"+strings.Repeat(" ", 9000)); err != nil {
			t.Fatal(err)
		}
	}
	waitInUse(t, budget, n*firstBodyChunk)
	if r := e.post(t, "/v2/models/simple/infer", simpleRequest("")); r.code != http.StatusOK {
		t.Fatalf("a good client during the attack: %d %s", r.code, r.body)
	}
	for _, c := range conns {
		_ = c.Close()
	}
	waitInUse(t, budget, 0)
}

// TestBudgetRefusal: a body that does not fit the budget is answered 429
// with Retry-After and a message naming the flag, and counted.
func TestBudgetRefusal(t *testing.T) {
	budget := guard.NewBudget(100 << 10)
	e := newEnv(t, Config{Budget: budget})
	body := simpleRequest("") + strings.Repeat(" ", 200<<10)
	r := e.post(t, "/v2/models/simple/infer", body)
	if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), guard.LimitInflightBytes) {
		t.Fatalf("over the budget: %d %v %s", r.code, r.header, r.body)
	}
	if budget.Rejected() != 1 {
		t.Fatalf("%d refusals counted, want 1", budget.Rejected())
	}
	waitInUse(t, budget, 0)
	if r := e.post(t, "/v2/models/simple/infer", simpleRequest("")); r.code != http.StatusOK {
		t.Fatalf("a body that fits: %d %s", r.code, r.body)
	}
	waitInUse(t, budget, 0)
}

// TestStreamedBodyLimits: the body size limit holds for chunked bodies,
// which declare no length, and a body cut short is not served.
func TestStreamedBodyLimits(t *testing.T) {
	e := newEnv(t, Config{MaxRequestBodySize: 1 << 10})
	for _, c := range []struct {
		name string
		raw  string
		want int
	}{
		{"chunked over the limit", "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", 2<<10, strings.Repeat(" ", 2<<10)), http.StatusRequestEntityTooLarge},
		{"chunked within it", "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(simpleRequest("")), simpleRequest("")), http.StatusOK},
		{"declared over the limit", "POST /v2/models/simple/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n", http.StatusRequestEntityTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, c.raw); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.want, b)
			}
			if c.want == http.StatusRequestEntityTooLarge && !strings.Contains(string(b), guard.LimitRequestBody) {
				t.Fatalf("the 413 does not name its flag: %s", b)
			}
		})
	}
}

// TestBudgetCountsDecoding: a JSON body that fits the budget but whose
// decoded tensors might not is refused before it is decoded.
func TestBudgetCountsDecoding(t *testing.T) {
	budget := guard.NewBudget(300 << 10)
	e := newEnv(t, Config{Budget: budget})
	r := e.post(t, "/v2/models/simple/infer", simpleRequest("")+strings.Repeat(" ", 100<<10))
	if r.code != http.StatusTooManyRequests || !strings.Contains(string(r.body), guard.LimitInflightBytes) {
		t.Fatalf("decoding over the budget: %d %s", r.code, r.body)
	}
	waitInUse(t, budget, 0)
	if r := e.post(t, "/v2/models/simple/infer", simpleRequest("")); r.code != http.StatusOK {
		t.Fatalf("within the budget: %d %s", r.code, r.body)
	}
	waitInUse(t, budget, 0)
}
