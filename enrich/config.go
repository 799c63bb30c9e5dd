package enrich

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// Configuration is the enrich section of the configuration file.
type Configuration struct {
	// IdentityTTL is how long a login binds an address to a user when no
	// logout ends it first.
	IdentityTTL time.Duration `yaml:"identity_ttl"`
	// ConsumerGroup shares the flows among enrich processes.
	ConsumerGroup string `yaml:"consumer_group"`
	// PolicyReloadInterval is how often the policy file is checked for
	// changes (SIGHUP reloads at once).
	PolicyReloadInterval time.Duration `yaml:"policy_reload_interval"`
	// GeoIPCountryDB is a MaxMind-format Country or City database (.mmdb);
	// when set, flows get src_country and dst_country.
	GeoIPCountryDB string `yaml:"geoip_country_db"`
	// GeoIPASNDB is a MaxMind-format ASN database; when set, flows whose
	// exporter gave no AS number get one from it.
	GeoIPASNDB string `yaml:"geoip_asn_db"`
}

// DefaultConfiguration returns the defaults.
func DefaultConfiguration() Configuration {
	return Configuration{
		IdentityTTL:          8 * time.Hour,
		ConsumerGroup:        "flowaudit-enrich",
		PolicyReloadInterval: 2 * time.Second,
	}
}

// Validate checks the configuration; errors name the key.
func (c Configuration) Validate() error {
	var errs []error
	if c.IdentityTTL <= 0 {
		errs = append(errs, fmt.Errorf("enrich.identity_ttl: must be positive, got %s", c.IdentityTTL))
	}
	if c.ConsumerGroup == "" {
		errs = append(errs, errors.New("enrich.consumer_group: must not be empty"))
	}
	if c.PolicyReloadInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("enrich.policy_reload_interval: must be at least 100ms, got %s", c.PolicyReloadInterval))
	}
	for key, path := range map[string]string{"enrich.geoip_country_db": c.GeoIPCountryDB, "enrich.geoip_asn_db": c.GeoIPASNDB} {
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", key, err))
		}
	}
	return errors.Join(errs...)
}
