// Package signedpost posts flowaudit's non-alert events (report packs,
// audit digests) to webhook endpoints, signed like alerts: the body's
// hex HMAC-SHA256 keyed with the endpoint's secret in
// X-Flowaudit-Signature, the event kind in X-Flowaudit-Event.
package signedpost

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/flowaudit/flowaudit/internal/backoff"
)

// Target is one endpoint.
type Target struct {
	URL, Secret string
	Headers     map[string]string // sent first; the X-Flowaudit-* headers win
	Timeout     time.Duration     // per attempt; default 10 s
	MaxAttempts int               // default 3
}

// Sign returns the hex HMAC-SHA256 of body keyed with secret, or "" when
// there is no secret.
func Sign(secret string, body []byte) string {
	if secret == "" {
		return ""
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// Post posts body to t as event (X-Flowaudit-Event), with the extra
// headers, up to t.MaxAttempts times with a doubling wait from 500 ms
// (at most 8 s). It returns the last attempt's error, or nil once an
// attempt got a 2xx answer; a cancelled ctx ends the retries.
func Post(ctx context.Context, client *http.Client, t Target, event string, extra map[string]string, body []byte) error {
	if client == nil {
		client = http.DefaultClient
	}
	sig := Sign(t.Secret, body)
	attempts := t.MaxAttempts
	if attempts <= 0 {
		attempts = 3
	}
	var last error
	for a := 1; a <= attempts; a++ {
		if last = postOnce(ctx, client, t, event, extra, body, sig, a); last == nil || ctx.Err() != nil {
			return last
		}
		if a < attempts {
			select {
			case <-ctx.Done():
				return last
			case <-time.After(backoff.Delay(500*time.Millisecond, 8*time.Second, a, false)):
			}
		}
	}
	return last
}

func postOnce(ctx context.Context, client *http.Client, t Target, event string, extra map[string]string, body []byte, sig string, attempt int) error {
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flowaudit")
	req.Header.Set("X-Flowaudit-Event", event)
	for k, v := range extra {
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Flowaudit-Timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set("X-Flowaudit-Attempt", strconv.Itoa(attempt))
	if sig != "" {
		req.Header.Set("X-Flowaudit-Signature", sig)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
