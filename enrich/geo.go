package enrich

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/flowaudit/flowaudit/schemas"
)

// geoCacheBits sizes the GeoDB lookup cache: 1<<geoCacheBits two-way
// buckets (8192 entries, 64 KiB of pointers plus ~64 bytes per cached
// entry). Flow traffic is dominated by a small set of hot addresses
// (servers, gateways, resolvers), so a small cache catches most lookups;
// a third address hashed to a full bucket evicts the older of the two.
const geoCacheBits = 12

// geoInternMax bounds the string intern table. A GeoLite2 ASN database
// has some 80k organisations, a Country database ~250 codes; past the
// bound, new strings are used as decoded rather than interned.
const geoInternMax = 1 << 16

// GeoDB answers country and AS questions for addresses from
// GeoLite2/GeoIP2-style Country (or City) and ASN databases (MaxMind DB
// .mmdb files).
//
// Lookup is safe for concurrent use and does not allocate when the address
// is in its cache. A GeoDB is immutable: to pick up new database files,
// open a new GeoDB and Close the old one once no Lookup uses it.
type GeoDB struct {
	country *maxminddb.Reader // nil when no country database was given
	asn     *maxminddb.Reader // nil when no ASN database was given
	// countryV4, asnV4: the database holds IPv4 only (ip_version 4), so
	// IPv6 addresses are unknown without asking it.
	countryV4, asnV4 bool

	seed     uint64 // per-GeoDB hash seed, so a traffic mix cannot be tuned against every instance
	failures atomic.Uint64

	internMu sync.Mutex
	intern   map[string]string

	cache [1 << geoCacheBits][2]atomic.Pointer[geoEntry]
}

// geoEntry is one cached answer. It is never modified once published, so
// readers need only the atomic load of the slot.
type geoEntry struct {
	key     schemas.Addr
	country string
	asOrg   string
	asn     uint32
}

// OpenGeo opens a country database (GeoIP2/GeoLite2 Country or City, or a
// compatible one such as DB-IP's) and an ASN database (GeoLite2 ASN or
// GeoIP2 ISP). Either path may be "": that half of Lookup then returns zero
// values. Errors name the file and say what is wrong: missing or
// unreadable (wrapping the fs error, so errors.Is(err, fs.ErrNotExist)
// works), not a MaxMind DB file, or the wrong database type.
func OpenGeo(countryPath, asnPath string) (*GeoDB, error) {
	g := &GeoDB{seed: rand.Uint64(), intern: make(map[string]string)}
	if countryPath != "" {
		r, err := openMMDB("country", countryPath, "a Country or City database", isCountryType)
		if err != nil {
			return nil, err
		}
		g.country, g.countryV4 = r, r.Metadata.IPVersion == 4
	}
	if asnPath != "" {
		r, err := openMMDB("ASN", asnPath, "an ASN or ISP database", isASNType)
		if err != nil {
			if g.country != nil {
				_ = g.country.Close()
			}
			return nil, err
		}
		g.asn, g.asnV4 = r, r.Metadata.IPVersion == 4
	}
	return g, nil
}

func isCountryType(t string) bool {
	return strings.Contains(t, "Country") || strings.Contains(t, "City") || strings.Contains(t, "Enterprise")
}

func isASNType(t string) bool {
	return strings.Contains(t, "ASN") || strings.Contains(t, "ISP")
}

// openMMDB opens one database and checks its type; what names the role
// ("country", "ASN") and want describes the accepted types for the error.
func openMMDB(what, path, want string, typeOK func(string) bool) (*maxminddb.Reader, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("geo %s database %q: "+format, append([]any{what, path}, args...)...)
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			// Drop PathError's own "stat PATH" prefix: the path is
			// already in our message; pe.Err keeps errors.Is working.
			err = pe.Err
		}
		return nil, fail("%w", err)
	case fi.IsDir():
		return nil, fail("is a directory, not a MaxMind DB (.mmdb) file")
	case fi.Size() == 0:
		return nil, fail("empty file, not a MaxMind DB (.mmdb) file")
	}
	r, err := maxminddb.Open(path)
	if err != nil {
		var ide maxminddb.InvalidDatabaseError
		if errors.As(err, &ide) {
			return nil, fail("not a MaxMind DB (.mmdb) file: %w", err)
		}
		return nil, fail("%w", err)
	}
	if t := r.Metadata.DatabaseType; !typeOK(t) {
		_ = r.Close()
		return nil, fail("database type %q is not %s", t, want)
	}
	return r, nil
}

// Close releases the databases. Lookup must not be called concurrently
// with or after Close.
func (g *GeoDB) Close() error {
	var errs []error
	if g.country != nil {
		if err := g.country.Close(); err != nil {
			errs = append(errs, fmt.Errorf("geo country database: %w", err))
		}
	}
	if g.asn != nil {
		if err := g.asn.Close(); err != nil {
			errs = append(errs, fmt.Errorf("geo ASN database: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Failures counts lookups whose database record could not be decoded (a
// corrupt file or fields of unexpected types); such lookups answer with
// what could be decoded, usually zero values. Per-flow errors are counted
// here rather than returned, as for every other hot-path stage.
func (g *GeoDB) Failures() uint64 {
	return g.failures.Load()
}

// Lookup returns the ISO 3166-1 alpha-2 country code ("" when unknown), AS
// number (0 when unknown) and AS organization ("" when unknown) for a.
// IPv4-mapped addresses are looked up as IPv4. The zero Addr (not present)
// and a nil GeoDB give zero values. The country is the one where the
// address is located, or failing that the one where its block is
// registered (GeoIP leaves the former out for anycast and satellite
// networks). The returned strings are shared and must not be modified
// (Go strings cannot be anyway).
func (g *GeoDB) Lookup(a schemas.Addr) (country string, asn uint32, asOrg string) {
	if g == nil || a == (schemas.Addr{}) {
		return "", 0, ""
	}
	// Two-way buckets: a hit in either way returns; a miss puts the new
	// entry first and moves the previous first entry to the second way,
	// so two hot addresses that share a bucket do not evict each other.
	// Entries are immutable, so racing writers at worst lose an entry.
	bucket := &g.cache[g.bucket(a)]
	first := bucket[0].Load()
	if first != nil && first.key == a {
		return first.country, first.asn, first.asOrg
	}
	if e := bucket[1].Load(); e != nil && e.key == a {
		return e.country, e.asn, e.asOrg
	}
	e := g.lookupDB(a)
	bucket[1].Store(first)
	bucket[0].Store(e)
	return e.country, e.asn, e.asOrg
}

// bucket hashes a to a cache bucket index: 64-bit multiply-mixes, keeping
// the top bits, which depend on every bit of the address.
func (g *GeoDB) bucket(a schemas.Addr) uint64 {
	lo := binary.LittleEndian.Uint64(a[:8])
	hi := binary.LittleEndian.Uint64(a[8:])
	h := (hi^g.seed)*0x9e3779b97f4a7c15 + lo*0xc2b2ae3d27d4eb4f
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	return h >> (64 - geoCacheBits)
}

// countryRecord is the part of a Country/City record we read.
type countryRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	RegisteredCountry struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"registered_country"`
}

// asnRecord is the part of an ASN/ISP record we read.
type asnRecord struct {
	Number uint32 `maxminddb:"autonomous_system_number"`
	Org    string `maxminddb:"autonomous_system_organization"`
}

// lookupDB walks the databases, bypassing the cache, and returns a new
// entry for a.
func (g *GeoDB) lookupDB(a schemas.Addr) *geoEntry {
	e := &geoEntry{key: a}
	ip := a.Netip() // unmapped: IPv4 is looked up in the IPv4 subtree
	if g.country != nil && (ip.Is4() || !g.countryV4) {
		var rec countryRecord
		if g.decode(g.country, ip, &rec) {
			c := rec.Country.ISOCode
			if c == "" {
				c = rec.RegisteredCountry.ISOCode
			}
			e.country = g.interned(c)
		}
	}
	if g.asn != nil && (ip.Is4() || !g.asnV4) {
		var rec asnRecord
		if g.decode(g.asn, ip, &rec) {
			e.asn, e.asOrg = rec.Number, g.interned(rec.Org)
		}
	}
	return e
}

// decode looks ip up and decodes its record into v; false when the address
// is not in the database or the record is unreadable (counted).
func (g *GeoDB) decode(r *maxminddb.Reader, ip netip.Addr, v any) bool {
	res := r.Lookup(ip)
	if err := res.Err(); err != nil {
		g.failures.Add(1)
		return false
	}
	if !res.Found() {
		return false
	}
	if err := res.Decode(v); err != nil {
		g.failures.Add(1)
		// Keep whatever fields decoded before the error.
	}
	return true
}

// interned returns the shared copy of s, so that the cache holds one copy
// of each organization name however many addresses map to it.
func (g *GeoDB) interned(s string) string {
	if s == "" {
		return ""
	}
	g.internMu.Lock()
	defer g.internMu.Unlock()
	if v, ok := g.intern[s]; ok {
		return v
	}
	if len(g.intern) < geoInternMax {
		g.intern[s] = s
	}
	return s
}
