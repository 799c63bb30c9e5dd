package console

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Configuration is the console section of the configuration file.
type Configuration struct {
	// Listen is the console's HTTP address; "" disables it (in run).
	Listen string `yaml:"listen"`
	// Tokens are the bearer tokens that may read the console. Empty means
	// no authentication, allowed only on a loopback address.
	Tokens []string `yaml:"tokens"`
}

// DefaultConfiguration returns the defaults: loopback, no tokens.
func DefaultConfiguration() Configuration {
	return Configuration{Listen: "127.0.0.1:8088"}
}

// Validate checks every key; each error names it.
func (c Configuration) Validate() error {
	var errs []error
	for i, t := range c.Tokens {
		if t == "" || strings.ContainsAny(t, " \t\r\n") {
			errs = append(errs, fmt.Errorf("console.tokens[%d]: a token must be non-empty and without whitespace", i))
		}
	}
	if c.Listen == "" {
		return errors.Join(errs...)
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		errs = append(errs, fmt.Errorf("console.listen: %q is not host:port (or empty to disable)", c.Listen))
	} else if len(c.Tokens) == 0 && !loopback(host) {
		errs = append(errs, fmt.Errorf("console.listen: %q is not a loopback address and console.tokens is empty: "+
			"set console.tokens to the bearer tokens allowed to read the console, or listen on 127.0.0.1", c.Listen))
	}
	return errors.Join(errs...)
}

// loopback reports whether host names only the loopback interface ("" and
// unspecified addresses listen on every interface).
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
