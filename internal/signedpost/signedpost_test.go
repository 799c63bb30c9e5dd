package signedpost

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

func TestPostSignsAndRetries(t *testing.T) {
	body := []byte(`{"event":"report"}`)
	var mu sync.Mutex
	var got []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if string(b) != string(body) {
			t.Errorf("body %q, want %q", b, body)
		}
		mu.Lock()
		got = append(got, r.Header.Clone())
		n := len(got)
		mu.Unlock()
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	target := Target{URL: srv.URL, Secret: "s3cret", Headers: map[string]string{"X-Team": "soc", "X-Flowaudit-Event": "spoofed"}, MaxAttempts: 3}
	if err := Post(context.Background(), nil, target, "report", map[string]string{"X-Flowaudit-Report-Id": "r1"}, body); err != nil {
		t.Fatalf("Post: %v", err)
	}
	if len(got) != 2 {
		t.Fatalf("%d attempts, want 2 (one 503, then 200)", len(got))
	}
	// HMAC-SHA256("s3cret", body), computed independently with openssl.
	const wantSig = "8e43cee40975cca1290c9455b09b3202c428eb447428f946b00e8b17deb89bbb"
	for i, h := range got {
		if h.Get("X-Flowaudit-Signature") != wantSig {
			t.Errorf("attempt %d: signature %q, want %q", i+1, h.Get("X-Flowaudit-Signature"), wantSig)
		}
		if h.Get("X-Flowaudit-Event") != "report" || h.Get("X-Flowaudit-Report-Id") != "r1" || h.Get("X-Team") != "soc" {
			t.Errorf("attempt %d: headers %v", i+1, h)
		}
		if h.Get("X-Flowaudit-Attempt") != []string{"1", "2"}[i] {
			t.Errorf("attempt %d: X-Flowaudit-Attempt %q", i+1, h.Get("X-Flowaudit-Attempt"))
		}
	}
}

func TestPostGivesUp(t *testing.T) {
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	err := Post(context.Background(), nil, Target{URL: srv.URL, MaxAttempts: 2}, "digest", nil, []byte("{}"))
	if err == nil || err.Error() != "HTTP 500" || n != 2 {
		t.Fatalf("err %v after %d attempts, want HTTP 500 after 2", err, n)
	}
}
