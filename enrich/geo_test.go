package enrich

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/flowaudit/flowaudit/schemas"
)

// writeMMDB builds a small .mmdb file of type dbType in dir from
// network → record pairs and returns its path.
func writeMMDB(t testing.TB, dir, name string, opts mmdbwriter.Options, records map[string]mmdbtype.Map) string {
	t.Helper()
	// The test networks are documentation ranges, which the writer
	// refuses unless told otherwise.
	opts.IncludeReservedNetworks = true
	tree, err := mmdbwriter.New(opts)
	if err != nil {
		t.Fatalf("mmdbwriter.New: %v", err)
	}
	for cidr, rec := range records {
		_, network, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatalf("ParseCIDR(%q): %v", cidr, err)
		}
		if err := tree.Insert(network, rec); err != nil {
			t.Fatalf("Insert(%s): %v", cidr, err)
		}
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatalf("WriteTo(%s): %v", path, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func countryRec(iso string) mmdbtype.Map {
	return mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(iso)}}
}

// writeGeoDBs writes the test Country and ASN databases into dir. The
// Country one has no IPv4 aliases (::ffff:0:0/96 is empty), so it only
// answers mapped IPv4 addresses that are looked up as IPv4.
func writeGeoDBs(t testing.TB, dir string) (countryPath, asnPath string) {
	t.Helper()
	countryPath = writeMMDB(t, dir, "country.mmdb",
		mmdbwriter.Options{DatabaseType: "GeoIP2-Country", DisableIPv4Aliasing: true},
		map[string]mmdbtype.Map{
			"203.0.113.0/24":  countryRec("AU"),
			"2001:db8:2::/48": countryRec("DE"),
			// Anycast-style record: only the registered country.
			"192.0.2.128/25": {"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("NL")}},
		})
	asnPath = writeMMDB(t, dir, "asn.mmdb",
		mmdbwriter.Options{DatabaseType: "GeoLite2-ASN"},
		map[string]mmdbtype.Map{
			"198.51.100.0/24": {
				"autonomous_system_number":       mmdbtype.Uint32(64500),
				"autonomous_system_organization": mmdbtype.String("Example Net"),
			},
			"2001:db8:2::/48": {
				"autonomous_system_number":       mmdbtype.Uint32(64501),
				"autonomous_system_organization": mmdbtype.String("Example Six"),
			},
		})
	return countryPath, asnPath
}

func openTestGeo(t testing.TB, countryPath, asnPath string) *GeoDB {
	t.Helper()
	g, err := OpenGeo(countryPath, asnPath)
	if err != nil {
		t.Fatalf("OpenGeo: %v", err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return g
}

func addr(s string) schemas.Addr {
	return schemas.AddrFromNetip(netip.MustParseAddr(s))
}

type geoAnswer struct {
	Country string
	ASN     uint32
	ASOrg   string
}

func lookupAnswer(g *GeoDB, a schemas.Addr) geoAnswer {
	c, n, o := g.Lookup(a)
	return geoAnswer{c, n, o}
}

func TestGeoLookup(t *testing.T) {
	countryPath, asnPath := writeGeoDBs(t, t.TempDir())
	both := openTestGeo(t, countryPath, asnPath)
	countryOnly := openTestGeo(t, countryPath, "")
	asnOnly := openTestGeo(t, "", asnPath)
	neither := openTestGeo(t, "", "")

	au := geoAnswer{Country: "AU"}
	exampleNet := geoAnswer{ASN: 64500, ASOrg: "Example Net"}
	de := geoAnswer{Country: "DE", ASN: 64501, ASOrg: "Example Six"}
	cases := []struct {
		name string
		g    *GeoDB
		addr schemas.Addr
		want geoAnswer
	}{
		{"ipv4 country", both, schemas.AddrFrom4([4]byte{203, 0, 113, 7}), au},
		{"ipv4 country from netip", both, addr("203.0.113.255"), au},
		{"ipv4 mapped text", both, addr("::ffff:203.0.113.7"), au},
		{"ipv4 asn", both, schemas.AddrFrom4([4]byte{198, 51, 100, 1}), exampleNet},
		{"ipv4 registered country", both, addr("192.0.2.200"), geoAnswer{Country: "NL"}},
		{"ipv6 both", both, addr("2001:db8:2::1"), de},
		{"ipv6 both end of prefix", both, addr("2001:db8:2:ffff:ffff:ffff:ffff:ffff"), de},
		{"ipv4 unknown", both, addr("192.0.2.1"), geoAnswer{}},
		{"ipv4 next to known", both, addr("203.0.114.0"), geoAnswer{}},
		{"ipv6 unknown", both, addr("2001:db8:3::1"), geoAnswer{}},
		{"zero addr", both, schemas.Addr{}, geoAnswer{}},
		{"country only v4", countryOnly, addr("203.0.113.7"), au},
		{"country only v6", countryOnly, addr("2001:db8:2::1"), geoAnswer{Country: "DE"}},
		{"country only asn range", countryOnly, addr("198.51.100.1"), geoAnswer{}},
		{"asn only v4", asnOnly, addr("198.51.100.1"), exampleNet},
		{"asn only v6", asnOnly, addr("2001:db8:2::1"), geoAnswer{ASN: 64501, ASOrg: "Example Six"}},
		{"asn only country range", asnOnly, addr("203.0.113.7"), geoAnswer{}},
		{"neither", neither, addr("203.0.113.7"), geoAnswer{}},
		{"nil GeoDB", nil, addr("203.0.113.7"), geoAnswer{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Twice: the first answer comes from the databases, the
			// second from the cache.
			for _, pass := range []string{"miss", "hit"} {
				if diff := cmp.Diff(lookupAnswer(tc.g, tc.addr), tc.want); diff != "" {
					t.Errorf("%s: Lookup(%s) (-got +want):\n%s", pass, tc.addr, diff)
				}
			}
		})
	}
	for name, g := range map[string]*GeoDB{"both": both, "country": countryOnly, "asn": asnOnly} {
		if n := g.Failures(); n != 0 {
			t.Errorf("%s: Failures() = %d, want 0", name, n)
		}
	}
}

// TestGeoLookupIPv4OnlyDB: an ip_version 4 database answers IPv4 and
// says nothing (and counts no failure) for IPv6.
func TestGeoLookupIPv4OnlyDB(t *testing.T) {
	dir := t.TempDir()
	asnPath := writeMMDB(t, dir, "asn4.mmdb",
		mmdbwriter.Options{DatabaseType: "GeoLite2-ASN", IPVersion: 4},
		map[string]mmdbtype.Map{"198.51.100.0/24": {
			"autonomous_system_number":       mmdbtype.Uint32(64500),
			"autonomous_system_organization": mmdbtype.String("Example Net"),
		}})
	g := openTestGeo(t, "", asnPath)
	if diff := cmp.Diff(lookupAnswer(g, addr("198.51.100.1")), geoAnswer{ASN: 64500, ASOrg: "Example Net"}); diff != "" {
		t.Errorf("IPv4 (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(lookupAnswer(g, addr("2001:db8:2::1")), geoAnswer{}); diff != "" {
		t.Errorf("IPv6 (-got +want):\n%s", diff)
	}
	if n := g.Failures(); n != 0 {
		t.Errorf("Failures() = %d, want 0", n)
	}
}

// TestGeoLookupBadRecord: a record whose fields have unexpected types is
// counted as a failure, not returned.
func TestGeoLookupBadRecord(t *testing.T) {
	asnPath := writeMMDB(t, t.TempDir(), "asn.mmdb",
		mmdbwriter.Options{DatabaseType: "GeoLite2-ASN"},
		map[string]mmdbtype.Map{"198.51.100.0/24": {
			"autonomous_system_number": mmdbtype.String("AS64500"),
		}})
	g := openTestGeo(t, "", asnPath)
	if got := lookupAnswer(g, addr("198.51.100.1")); got.ASN != 0 {
		t.Errorf("ASN = %d, want 0", got.ASN)
	}
	if n := g.Failures(); n != 1 {
		t.Errorf("Failures() = %d, want 1", n)
	}
}

func TestGeoOpenErrors(t *testing.T) {
	dir := t.TempDir()
	countryPath, asnPath := writeGeoDBs(t, dir)
	missing := filepath.Join(dir, "missing.mmdb")
	text := filepath.Join(dir, "text.mmdb")
	if err := os.WriteFile(text, []byte(strings.Repeat("not an mmdb\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.mmdb")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name               string
		countryPath, asn   string
		wantPath, wantText string
		wantNotExist       bool
	}{
		{"country missing", missing, asnPath, missing, "no such file", true},
		{"asn missing", countryPath, missing, missing, "no such file", true},
		{"country not mmdb", text, asnPath, text, "not a MaxMind DB", false},
		{"asn not mmdb", countryPath, text, text, "not a MaxMind DB", false},
		{"country empty", empty, "", empty, "empty file", false},
		{"country directory", dir, "", dir, "is a directory", false},
		{"asn db as country", asnPath, "", asnPath, `database type "GeoLite2-ASN" is not a Country or City database`, false},
		{"country db as asn", "", countryPath, countryPath, `database type "GeoIP2-Country" is not an ASN or ISP database`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g, err := OpenGeo(tc.countryPath, tc.asn)
			if err == nil {
				g.Close()
				t.Fatalf("OpenGeo(%q, %q) succeeded, want error", tc.countryPath, tc.asn)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantPath) || !strings.Contains(msg, tc.wantText) {
				t.Errorf("OpenGeo error %q, want it to mention %q and %q", msg, tc.wantPath, tc.wantText)
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tc.wantNotExist {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v (err: %v)", got, tc.wantNotExist, err)
			}
		})
	}
}

// TestGeoLookupCacheCollisions looks up more distinct addresses than the
// cache has slots, twice and from several goroutines, so evicted and
// colliding slots must still give each address its own answer (run with
// -race to check the cache's publication).
func TestGeoLookupCacheCollisions(t *testing.T) {
	countryPath, asnPath := writeGeoDBs(t, t.TempDir())
	g := openTestGeo(t, countryPath, asnPath)
	type probe struct {
		a    schemas.Addr
		want geoAnswer
	}
	var probes []probe
	for i := range 256 {
		probes = append(probes,
			probe{schemas.AddrFrom4([4]byte{203, 0, 113, byte(i)}), geoAnswer{Country: "AU"}},
			probe{schemas.AddrFrom4([4]byte{198, 51, 100, byte(i)}), geoAnswer{ASN: 64500, ASOrg: "Example Net"}},
			probe{schemas.AddrFrom4([4]byte{198, 51, 101, byte(i)}), geoAnswer{}},
		)
		for j := range 48 {
			probes = append(probes, probe{addr(fmt.Sprintf("2001:db8:2:%x::%x", i, j)), geoAnswer{"DE", 64501, "Example Six"}})
		}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for pass := range 2 {
				for i := range probes {
					p := probes[(i*7+w*1000)%len(probes)]
					if got := lookupAnswer(g, p.a); got != p.want {
						t.Errorf("worker %d pass %d: Lookup(%s) = %+v, want %+v", w, pass, p.a, got, p.want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestGeoLookupCachedDoesNotAllocate(t *testing.T) {
	countryPath, asnPath := writeGeoDBs(t, t.TempDir())
	g := openTestGeo(t, countryPath, asnPath)
	a := addr("198.51.100.1")
	g.Lookup(a)
	if n := testing.AllocsPerRun(100, func() { g.Lookup(a) }); n != 0 {
		t.Errorf("cached Lookup allocates %v times, want 0", n)
	}
}

// BenchmarkGeoLookup measures Lookup through the cache with a hot set of
// addresses (cached) and the database walk alone (uncached), for
// addresses that hit both databases.
func BenchmarkGeoLookup(b *testing.B) {
	countryPath, asnPath := writeGeoDBs(b, b.TempDir())
	g := openTestGeo(b, countryPath, asnPath)
	var addrs []schemas.Addr
	for i := range 128 {
		addrs = append(addrs,
			schemas.AddrFrom4([4]byte{203, 0, 113, byte(i)}),
			schemas.AddrFrom4([4]byte{198, 51, 100, byte(i)}),
			addr(fmt.Sprintf("2001:db8:2::%x", i)),
			schemas.AddrFrom4([4]byte{100, 64, 0, byte(i)}), // unknown
		)
	}
	b.Run("cached", func(b *testing.B) {
		for _, a := range addrs {
			g.Lookup(a)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.Lookup(addrs[i%len(addrs)])
			i++
		}
	})
	// miss: more distinct addresses than the cache holds, through
	// Lookup, so every call walks the databases and replaces an entry.
	b.Run("miss", func(b *testing.B) {
		var many []schemas.Addr
		for i := range 1 << 16 {
			many = append(many, schemas.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.Lookup(many[i%len(many)])
			i++
		}
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			g.lookupDB(addrs[i%len(addrs)])
			i++
		}
	})
}
