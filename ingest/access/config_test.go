package access_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/ingest/access"
)

func TestDefaultConfiguration(t *testing.T) {
	got := access.DefaultConfiguration()
	want := access.Configuration{
		SyslogListen:                  []string{"udp://0.0.0.0:5514", "tcp://0.0.0.0:5514"},
		SyslogIdleTimeout:             5 * time.Minute,
		SyslogMaxConnections:          1024,
		SyslogMaxConnectionsPerSource: 32,
		HTTPListen:                    "127.0.0.1:8080",
		SyslogReceiveBuffer:           32 << 20,
		HTTPMaxBody:                   10 << 20,
		HTTPMaxConcurrent:             8,
		HTTPReadTimeout:               2 * time.Minute,
		HTTPReadIdleTimeout:           10 * time.Second,
		HTTPAckTimeout:                30 * time.Second,
		TailPollInterval:              250 * time.Millisecond,
		Timezone:                      "UTC",
		MaxLineBytes:                  64 << 10,
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("DefaultConfiguration() (-got +want):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate() on the defaults: %v", err)
	}
}

func TestValidateNamesKeys(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*access.Configuration)
		want   string
	}{
		{"bad scheme", func(c *access.Configuration) { c.SyslogListen = []string{"udp://0.0.0.0:5514", "http://0.0.0.0:1"} }, "ingest.access.syslog_listen[1]: "},
		{"no port", func(c *access.Configuration) { c.SyslogListen = []string{"tcp://0.0.0.0"} }, "ingest.access.syslog_listen[0]: "},
		{"tls without cert", func(c *access.Configuration) { c.SyslogListen = []string{"tls://0.0.0.0:6514"} }, "ingest.access.syslog_listen[0]: "},
		{"idle timeout", func(c *access.Configuration) { c.SyslogIdleTimeout = 0 }, "ingest.access.syslog_idle_timeout: "},
		{"max connections", func(c *access.Configuration) { c.SyslogMaxConnections = 0 }, "ingest.access.syslog_max_connections: "},
		{"per source", func(c *access.Configuration) { c.SyslogMaxConnectionsPerSource = 2000 }, "ingest.access.syslog_max_connections_per_source: "},
		{"app format", func(c *access.Configuration) { c.SyslogApps = map[string]string{"web": "iis"} }, "ingest.access.syslog_apps.web: "},
		{"http listen", func(c *access.Configuration) { c.HTTPListen = "8080" }, "ingest.access.http_listen: "},
		{"token", func(c *access.Configuration) { c.HTTPTokens = []string{"ok", ""} }, "ingest.access.http_tokens[1]: "},
		{"max body", func(c *access.Configuration) { c.HTTPMaxBody = 0 }, "ingest.access.http_max_body: "},
		{"receive buffer", func(c *access.Configuration) { c.SyslogReceiveBuffer = -1 }, "ingest.access.syslog_receive_buffer: "},
		{"concurrent", func(c *access.Configuration) { c.HTTPMaxConcurrent = 0 }, "ingest.access.http_max_concurrent: "},
		{"read timeout", func(c *access.Configuration) { c.HTTPReadTimeout = 0 }, "ingest.access.http_read_timeout: "},
		{"read idle timeout", func(c *access.Configuration) { c.HTTPReadIdleTimeout = 3 * time.Minute }, "ingest.access.http_read_idle_timeout: "},
		{"ack timeout", func(c *access.Configuration) { c.HTTPAckTimeout = 0 }, "ingest.access.http_ack_timeout: "},
		{"cert without key", func(c *access.Configuration) { c.TLSCert = "cert.pem" }, "ingest.access.tls_cert: "},
		{"file path", func(c *access.Configuration) { c.Files = []access.FileConfiguration{{Format: "sshd"}} }, "ingest.access.files[0].path: "},
		{"file dup", func(c *access.Configuration) {
			c.Files = []access.FileConfiguration{{Path: "/a", Format: "sshd"}, {Path: "/a", Format: "nginx"}}
		}, "ingest.access.files[1].path: "},
		{"file format", func(c *access.Configuration) { c.Files = []access.FileConfiguration{{Path: "/a", Format: "csv"}} }, "ingest.access.files[0].format: "},
		{"stdin format", func(c *access.Configuration) {
			c.Files = []access.FileConfiguration{{Path: "-", Format: "dhcp_leases"}}
		}, "ingest.access.files[0].path: \"-\" (standard input) is read as format k8s_pods only"},
		{"poll", func(c *access.Configuration) { c.TailPollInterval = 0 }, "ingest.access.tail_poll_interval: "},
		{"timezone", func(c *access.Configuration) { c.Timezone = "Mars/Olympus" }, "ingest.access.timezone: "},
		{"json mapping", func(c *access.Configuration) {
			c.JSONMapping = access.JSONMappingConfiguration{User: "-", SrcAddr: "-", Action: "-", Resource: "-"}
		}, "ingest.access.json_mapping: "},
		{"max line", func(c *access.Configuration) { c.MaxLineBytes = 10 }, "ingest.access.max_line_bytes: "},
		{"client ca without cert", func(c *access.Configuration) { c.TLSClientCA = "ca.pem" }, "ingest.access.tls_client_ca: "},
		{"trusted sender", func(c *access.Configuration) { c.TrustedSenders = []string{"10.0.0.0/8", "10.0.0.0/33"} }, "ingest.access.trusted_senders[1]: "},
		{"trusted sender name", func(c *access.Configuration) { c.TrustedSenders = []string{"relay.example"} }, "ingest.access.trusted_senders[0]: "},
		{"token hosts empty", func(c *access.Configuration) { c.HTTPTokenHosts = map[string][]string{"sh1pper": nil} }, "ingest.access.http_token_hosts.sh…: "},
		{"token hosts claim", func(c *access.Configuration) {
			c.HTTPTokenHosts = map[string][]string{"sh1pper": {"web-1", "web-1/"}}
		}, "ingest.access.http_token_hosts.sh…[1]: "},
		{"token hosts token", func(c *access.Configuration) { c.HTTPTokenHosts = map[string][]string{"a b": {"web-1"}} }, "ingest.access.http_token_hosts: "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := access.DefaultConfiguration()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if err == nil {
				t.Fatalf("Validate() = nil, want an error naming %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) || strings.Count(err.Error(), "\n") != 0 {
				t.Errorf("Validate() = %q, want exactly one error starting with %q", err, tc.want)
			}
		})
	}
	ok := access.DefaultConfiguration()
	ok.SyslogListen = []string{"udp://[::]:514", "tcp://127.0.0.1:0"}
	ok.Files = []access.FileConfiguration{{Path: "/var/log/auth.log", Format: "sshd"}, {Path: "/var/log/syslog", Format: "syslog"}}
	ok.SyslogApps = map[string]string{"web-front": "nginx"}
	ok.Timezone = "Local"
	ok.HTTPListen = ""
	ok.TrustedSenders = []string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::ffff:198.51.100.0/120"}
	ok.HTTPTokenHosts = map[string][]string{"sh1pper": {"web-1", "web-2/nginx", "*/k8s_audit"}, "all": {"*"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate() on a valid configuration: %v", err)
	}
}
