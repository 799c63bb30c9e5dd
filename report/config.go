package report

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Configuration is the report section of the configuration file.
type Configuration struct {
	// Dir is where scheduled packs are written, one directory per pack
	// named by its report id; `flowaudit report` writes there too when
	// --out is not given.
	Dir string `yaml:"dir"`
	// Schedule is a cron expression ("0 6 1 * *", "@every 24h"): `run`
	// writes a pack per framework of Frameworks on it. "" = on demand only.
	Schedule string `yaml:"schedule"`
	// Frameworks are the frameworks of scheduled packs.
	Frameworks []string `yaml:"frameworks"`
	// SigningKey is an ed25519 private key file (PEM, PKCS #8, as written
	// by "openssl genpkey -algorithm ed25519"); when set, every pack's
	// MANIFEST.sha256 is signed into MANIFEST.sha256.sig.
	SigningKey string `yaml:"signing_key"`
	// Since is the history a scheduled pack covers, such as 90d.
	Since string `yaml:"since"`
}

// DefaultConfiguration returns the defaults of DESIGN.md.
func DefaultConfiguration() Configuration {
	return Configuration{Dir: "./var/reports", Frameworks: []string{PCIDSS4}, Since: "90d"}
}

// Validate checks every key; each error names it.
func (c Configuration) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("report.dir: must not be empty (packs are written under it)"))
	}
	if c.Schedule != "" {
		if _, err := CronParser.Parse(c.Schedule); err != nil {
			errs = append(errs, fmt.Errorf("report.schedule: %q: %v (use a 5-field cron expression such as \"0 6 * * 1\" or @every 24h)", c.Schedule, err))
		}
	}
	if len(c.Frameworks) == 0 && c.Schedule != "" {
		errs = append(errs, fmt.Errorf("report.frameworks: empty while report.schedule is set; name at least one of %s", strings.Join(Frameworks(), ", ")))
	}
	seen := map[string]bool{}
	for i, f := range c.Frameworks {
		if _, ok := frameworkTitles[f]; !ok {
			errs = append(errs, fmt.Errorf("report.frameworks[%d]: %q is not one of %s", i, f, strings.Join(Frameworks(), ", ")))
		} else if seen[f] {
			errs = append(errs, fmt.Errorf("report.frameworks[%d]: %q is listed twice", i, f))
		}
		seen[f] = true
	}
	if _, err := ParseSince(c.Since); err != nil {
		errs = append(errs, fmt.Errorf("report.since: %v", err))
	}
	if c.SigningKey != "" {
		if _, err := LoadSigningKey(c.SigningKey); err != nil {
			errs = append(errs, fmt.Errorf("report.signing_key: %v", err))
		}
	}
	return errors.Join(errs...)
}

// LoadSigningKey reads an ed25519 private key from a PEM file (PKCS #8,
// "PRIVATE KEY").
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PEM \"PRIVATE KEY\" block (create one with: openssl genpkey -algorithm ed25519 -out %s)", path, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an ed25519 key", path, k)
	}
	return ek, nil
}

// LoadPublicKey reads an ed25519 public key from a PEM file ("PUBLIC
// KEY", PKIX), or derives it from a private key file.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := LoadSigningKey(path)
		if err != nil {
			return nil, err
		}
		return k.Public().(ed25519.PublicKey), nil
	case "PUBLIC KEY":
		return parsePublicKey(block.Bytes, path)
	}
	return nil, fmt.Errorf("%s: PEM block %q is neither PUBLIC KEY nor PRIVATE KEY", path, block.Type)
}

func parsePublicKey(der []byte, name string) (ed25519.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an ed25519 key", name, k)
	}
	return ek, nil
}
