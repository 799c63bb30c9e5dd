package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/flowaudit/flowaudit/schemas"
)

// Defaults applied to an Endpoint key left out (zero). They are chosen so
// that a receiver that is down for 10 s still gets every alert: with 8
// attempts and equal-jitter backoff (each wait is between half and all of
// 0.5 s, 1 s, 2 s, 4 s, 8 s, 16 s, 30 s) the last attempt comes at least
// 30.75 s, and at most 61.5 s, after the first.
const (
	DefaultFormat         = FormatJSON
	DefaultMinSeverity    = "low"
	DefaultTimeout        = 10 * time.Second
	DefaultMaxAttempts    = 8
	DefaultInitialBackoff = 500 * time.Millisecond
	DefaultMaxBackoff     = 30 * time.Second
	DefaultQueueSize      = 1000
)

// Payload formats.
const (
	// FormatJSON posts the documented alert object (see payload.go).
	FormatJSON = "json"
	// FormatSlack posts a Slack incoming-webhook message (text + blocks).
	FormatSlack = "slack"
)

// maxQueueSize bounds queue_size so a typo cannot reserve gigabytes.
const maxQueueSize = 1_000_000

// Endpoint is one alerts.webhooks entry. The keys url, secret, format and
// min_severity are DESIGN.md's public contract; the others are optional
// tuning. Every zero value means "use the default" (Default* constants).
type Endpoint struct {
	// URL receives a POST per alert; http or https.
	URL string `yaml:"url"`
	// Secret, when set, signs each body: X-Flowaudit-Signature is the hex
	// HMAC-SHA256 of the exact body bytes keyed with Secret.
	Secret string `yaml:"secret"`
	// Format is json (default) or slack.
	Format string `yaml:"format"`
	// MinSeverity is the lowest severity sent: low (default), medium,
	// high or critical.
	MinSeverity string `yaml:"min_severity"`
	// Name labels this endpoint in metrics and logs. Default: the URL's
	// scheme, host and path, without user info or query, with token-like
	// path segments (as in Slack or Discord webhook URLs) redacted.
	Name string `yaml:"name"`
	// Timeout bounds one HTTP attempt, connection included (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// MaxAttempts is how many times one alert is tried before it is
	// reported undelivered (default 8; 1 disables retries).
	MaxAttempts int `yaml:"max_attempts"`
	// InitialBackoff is the wait after the first failed attempt (default
	// 500ms); it doubles after each failure, up to MaxBackoff (default
	// 30s). Each wait is jittered down by up to half.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	// QueueSize is how many alerts may wait for this endpoint (default
	// 1000); when full, the oldest waiting alert is dropped.
	QueueSize int `yaml:"queue_size"`
	// Headers are added to every request (e.g. Authorization). Headers
	// flowaudit sets itself cannot be overridden.
	Headers map[string]string `yaml:"headers"`
}

// Configuration is the alerts section's webhook part.
type Configuration struct {
	Webhooks []Endpoint `yaml:"webhooks"`
}

// DefaultConfiguration returns the defaults: no webhooks.
func DefaultConfiguration() Configuration {
	return Configuration{}
}

// Validate checks every endpoint; errors name the key
// ("alerts.webhooks[1].min_severity: ...").
func (c Configuration) Validate() error {
	var errs []error
	names := map[string]int{}
	for i, e := range c.Webhooks {
		prefix := fmt.Sprintf("alerts.webhooks[%d]", i)
		if err := e.Validate(prefix); err != nil {
			errs = append(errs, err)
		}
		if e.Name == "" {
			continue
		}
		if j, dup := names[e.Name]; dup {
			errs = append(errs, fmt.Errorf("%s.name: %q is already the name of alerts.webhooks[%d]", prefix, e.Name, j))
		} else {
			names[e.Name] = i
		}
	}
	return errors.Join(errs...)
}

// Validate checks e; prefix names the entry in errors, as in
// "alerts.webhooks[0]", giving "alerts.webhooks[0].url: required".
func (e Endpoint) Validate(prefix string) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}
	if e.URL == "" {
		bad("url", "required")
	} else if u, err := url.Parse(e.URL); err != nil {
		bad("url", "%q is not a URL", redactURL(e.URL))
	} else if u.Scheme != "http" && u.Scheme != "https" {
		bad("url", "scheme %q is not http or https", u.Scheme)
	} else if u.Host == "" {
		bad("url", "no host in %q", redactURL(e.URL))
	}
	switch e.Format {
	case "", FormatJSON, FormatSlack:
	default:
		bad("format", "%q is not json or slack", e.Format)
	}
	if e.MinSeverity != "" {
		if _, ok := schemas.ParseSeverity(e.MinSeverity); !ok {
			bad("min_severity", "%q is not low, medium, high or critical", e.MinSeverity)
		}
	}
	for key, d := range map[string]time.Duration{"timeout": e.Timeout, "initial_backoff": e.InitialBackoff, "max_backoff": e.MaxBackoff} {
		if d < 0 {
			bad(key, "must not be negative, got %s", d)
		}
	}
	if e.InitialBackoff > 0 && e.MaxBackoff > 0 && e.InitialBackoff > e.MaxBackoff {
		bad("initial_backoff", "%s is above max_backoff %s", e.InitialBackoff, e.MaxBackoff)
	} else if e.InitialBackoff > DefaultMaxBackoff && e.MaxBackoff == 0 {
		bad("initial_backoff", "%s is above the default max_backoff %s; set max_backoff too", e.InitialBackoff, DefaultMaxBackoff)
	}
	if e.MaxAttempts < 0 {
		bad("max_attempts", "must not be negative, got %d", e.MaxAttempts)
	}
	if e.QueueSize < 0 || e.QueueSize > maxQueueSize {
		bad("queue_size", "must be between 1 and %d (0 for the default %d), got %d", maxQueueSize, DefaultQueueSize, e.QueueSize)
	}
	for name := range e.Headers {
		if err := checkHeaderName(name); err != nil {
			bad("headers", "%q: %v", name, err)
		}
	}
	// Sorted output keeps error messages stable across runs.
	sortErrors(errs)
	return errors.Join(errs...)
}

// withDefaults fills every zero key.
func (e Endpoint) withDefaults() Endpoint {
	if e.Format == "" {
		e.Format = DefaultFormat
	}
	if e.MinSeverity == "" {
		e.MinSeverity = DefaultMinSeverity
	}
	if e.Timeout == 0 {
		e.Timeout = DefaultTimeout
	}
	if e.MaxAttempts == 0 {
		e.MaxAttempts = DefaultMaxAttempts
	}
	if e.InitialBackoff == 0 {
		e.InitialBackoff = DefaultInitialBackoff
	}
	if e.MaxBackoff == 0 {
		e.MaxBackoff = max(DefaultMaxBackoff, e.InitialBackoff)
	}
	if e.QueueSize == 0 {
		e.QueueSize = DefaultQueueSize
	}
	return e
}

// checkHeaderName rejects names that are not HTTP tokens and the headers
// flowaudit owns: letting configuration override them would break the
// signature or the body framing.
func checkHeaderName(name string) error {
	if name == "" {
		return errors.New("empty header name")
	}
	for _, r := range name {
		if r > 0x7e || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return errors.New("not a valid header name")
		}
	}
	canon := http.CanonicalHeaderKey(name)
	switch {
	case canon == "Content-Type", canon == "Content-Length", canon == "Host", canon == "Transfer-Encoding",
		strings.HasPrefix(canon, "X-Flowaudit-"):
		return errors.New("set by flowaudit, cannot be overridden")
	}
	return nil
}

func sortErrors(errs []error) {
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
}

// redactURL returns raw without user info and query, for error messages;
// unparseable input is cut at the first '?' or '@'-bearing authority.
func redactURL(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if i := strings.Index(raw, "@"); i >= 0 {
		if j := strings.Index(raw, "//"); j >= 0 && j < i {
			raw = raw[:j+2] + "…" + raw[i:]
		}
	}
	return raw
}
