package access

import (
	"crypto/subtle"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/flowaudit/flowaudit/schemas"
)

// Provenance and trust. Every event records where it came from (the
// peer's real address and the listener) and whether its sender may bind
// identities: a syslog line or an HTTP body can claim any host and any
// user, so only the connection tells who sent it. The collector decides;
// the enricher ignores the events flagged untrusted (they are stored all
// the same, for the audit trail).

// parseSender parses a trusted_senders entry: a CIDR or one address.
func parseSender(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR such as 10.0.0.0/8", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// hostClaim is one http_token_hosts entry: a host ("*" for any) and a
// source ("" for any).
type hostClaim struct {
	host, source string
}

// parseClaim parses HOST, HOST/SOURCE or */SOURCE ("*" alone: anything).
func parseClaim(s string) (hostClaim, error) {
	if s == "" || strings.ContainsAny(s, " \t\r\n") {
		return hostClaim{}, fmt.Errorf("%q: want HOST, HOST/SOURCE or */SOURCE without spaces", s)
	}
	host, source, hasSource := strings.Cut(s, "/")
	if host == "" || (hasSource && (source == "" || strings.Contains(source, "/"))) {
		return hostClaim{}, fmt.Errorf("%q: want HOST, HOST/SOURCE or */SOURCE (such as web-1, web-1/nginx or */k8s_audit)", s)
	}
	return hostClaim{host: strings.ToLower(host), source: source}, nil
}

func (h hostClaim) allows(ev *schemas.AccessEvent) bool {
	if h.host != "*" && !strings.EqualFold(h.host, ev.Host) {
		return false
	}
	return h.source == "" || h.source == ev.Source
}

// redact shows the start of a token only, for error messages.
func redact(token string) string {
	if len(token) <= 4 {
		return "<token>"
	}
	return token[:2] + "…"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// trustPolicy is trusted_senders and http_token_hosts, compiled.
type trustPolicy struct {
	senders []netip.Prefix // empty: every sender
	tokens  []httpToken    // every accepted bearer token
	// restricted is true when http_token_hosts is set: a token's events
	// may then claim only its entries (none for a token only in
	// http_tokens).
	restricted bool
}

type httpToken struct {
	token  []byte
	claims []hostClaim
}

func newTrustPolicy(cfg Configuration) *trustPolicy {
	t := &trustPolicy{restricted: len(cfg.HTTPTokenHosts) > 0}
	for _, s := range cfg.TrustedSenders {
		p, _ := parseSender(s) // checked by Validate
		t.senders = append(t.senders, p)
	}
	claimed := map[string]bool{}
	for _, token := range sortedKeys(cfg.HTTPTokenHosts) {
		ht := httpToken{token: []byte(token)}
		for _, s := range cfg.HTTPTokenHosts[token] {
			c, _ := parseClaim(s) // checked by Validate
			ht.claims = append(ht.claims, c)
		}
		t.tokens = append(t.tokens, ht)
		claimed[token] = true
	}
	for _, token := range cfg.HTTPTokens {
		if !claimed[token] {
			t.tokens = append(t.tokens, httpToken{token: []byte(token)})
			claimed[token] = true
		}
	}
	return t
}

// senderTrusted reports whether a peer may bind identities.
func (t *trustPolicy) senderTrusted(peer netip.Addr) bool {
	if len(t.senders) == 0 {
		return true
	}
	peer = peer.Unmap()
	for _, p := range t.senders {
		if p.Contains(peer) {
			return true
		}
	}
	return false
}

// authRequired reports whether HTTP requests need a bearer token.
func (t *trustPolicy) authRequired() bool { return len(t.tokens) > 0 }

// token returns the configured token equal to given, comparing in
// constant time against every token, or nil.
func (t *trustPolicy) token(given []byte) *httpToken {
	var found *httpToken
	for i := range t.tokens {
		if subtle.ConstantTimeCompare(given, t.tokens[i].token) == 1 {
			found = &t.tokens[i]
		}
	}
	return found
}

// claimsAllowed reports whether the events of a request authenticated
// with tok may claim ev's host and source.
func (t *trustPolicy) claimsAllowed(tok *httpToken, ev *schemas.AccessEvent) bool {
	if !t.restricted {
		return true
	}
	if tok == nil {
		return false
	}
	for _, c := range tok.claims {
		if c.allows(ev) {
			return true
		}
	}
	return false
}
