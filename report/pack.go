package report

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Files of a pack.
const (
	FileHTML      = "index.html"
	FilePDF       = "report.pdf"
	FileJSON      = "report.json"
	FileManifest  = "MANIFEST.sha256"
	FileSignature = "MANIFEST.sha256.sig"
	FilePublicKey = "MANIFEST.sha256.pub"
)

// Written is where a pack went: its directory and the SHA-256 of its
// manifest (which names every other file's hash).
type Written struct {
	Dir            string
	ManifestSHA256 string
	Signed         bool
}

// renderers render the pack's documents besides report.json and the
// evidence; each returns the file's bytes.
var renderers = []struct {
	name   string
	render func(p *Pack) ([]byte, error)
}{
	{FileJSON, renderJSON},
	{FileHTML, RenderHTML},
	{FilePDF, RenderPDF},
}

func renderJSON(p *Pack) ([]byte, error) {
	b, err := json.MarshalIndent(p.Report, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// RenderCSV returns one evidence table as CSV (RFC 4180, header first).
func RenderCSV(t Table) ([]byte, error) {
	if t.Raw != nil {
		return t.Raw, nil
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.Write(t.Header); err != nil {
		return nil, err
	}
	if err := w.WriteAll(t.Rows); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Write renders p into dir (created; it must be empty or absent):
// report.json, index.html, report.pdf, evidence/*.csv, then
// MANIFEST.sha256 over every file and, with key, MANIFEST.sha256.sig
// (the raw 64-byte ed25519 signature of the manifest, base64) and the
// public key beside it.
func Write(dir string, p *Pack, key ed25519.PrivateKey) (*Written, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("report: %s is not empty: write each pack into a new directory", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, "evidence"), 0o755); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	files := map[string][]byte{}
	for _, r := range renderers {
		b, err := r.render(p)
		if err != nil {
			return nil, fmt.Errorf("report: rendering %s: %w", r.name, err)
		}
		files[r.name] = b
	}
	for _, t := range p.Evidence {
		b, err := RenderCSV(t)
		if err != nil {
			return nil, fmt.Errorf("report: evidence %s: %w", t.Name, err)
		}
		files["evidence/"+t.Name] = b
	}
	if key != nil {
		der, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			return nil, fmt.Errorf("report: public key: %w", err)
		}
		files[FilePublicKey] = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var manifest bytes.Buffer
	for _, n := range names {
		sum := sha256.Sum256(files[n])
		fmt.Fprintf(&manifest, "%s  %s\n", hex.EncodeToString(sum[:]), n)
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(n)), files[n], 0o644); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, FileManifest), manifest.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	sum := sha256.Sum256(manifest.Bytes())
	w := &Written{Dir: dir, ManifestSHA256: hex.EncodeToString(sum[:])}
	if key != nil {
		sig := ed25519.Sign(key, manifest.Bytes())
		enc := []byte(base64.StdEncoding.EncodeToString(sig) + "\n")
		if err := os.WriteFile(filepath.Join(dir, FileSignature), enc, 0o644); err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		w.Signed = true
	}
	return w, nil
}

// Verification is the outcome of Verify.
type Verification struct {
	Dir      string   `json:"dir"`
	Files    int      `json:"files"`    // files the manifest lists
	Problems []string `json:"problems"` // empty when the pack verifies
	// Signature is "valid", "invalid", "unsigned" or "unchecked" (signed,
	// but no key to check against).
	Signature string `json:"signature"`
	// KeySource says which public key checked the signature: "--key", or
	// "pack" (the key shipped in the pack: proves integrity, not origin).
	KeySource      string `json:"key_source,omitempty"`
	ManifestSHA256 string `json:"manifest_sha256"`
}

// OK reports whether the pack verified.
func (v *Verification) OK() bool { return len(v.Problems) == 0 }

// Verify checks the pack in dir: every file the manifest lists has its
// hash, no other file is present (besides the manifest, its signature and
// its public key), and the signature, when present, is valid for pub (nil:
// the public key in the pack).
func Verify(dir string, pub ed25519.PublicKey) (*Verification, error) {
	manifest, err := os.ReadFile(filepath.Join(dir, FileManifest))
	if err != nil {
		return nil, fmt.Errorf("%w (is %s an evidence pack?)", err, dir)
	}
	sum := sha256.Sum256(manifest)
	v := &Verification{Dir: dir, Problems: []string{}, ManifestSHA256: hex.EncodeToString(sum[:])}
	listed := map[string]bool{}
	entries, problems := ParseManifest(manifest)
	v.Problems = append(v.Problems, problems...)
	for _, e := range entries {
		listed[e.Path] = true
		v.Files++
		data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(e.Path)))
		if err != nil {
			v.Problems = append(v.Problems, fmt.Sprintf("%s: missing (%v)", e.Path, err))
			continue
		}
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != e.SHA256 {
			v.Problems = append(v.Problems, fmt.Sprintf("%s: SHA-256 %s, the manifest says %s (modified)", e.Path, hex.EncodeToString(got[:]), e.SHA256))
		}
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		switch rel {
		case FileManifest, FileSignature:
			return nil
		}
		if !listed[rel] {
			v.Problems = append(v.Problems, fmt.Sprintf("%s: not in the manifest (added after the pack was written)", rel))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if page, err := os.ReadFile(filepath.Join(dir, FileHTML)); err == nil {
		ext, err := ExternalURLs(page)
		if err != nil {
			v.Problems = append(v.Problems, fmt.Sprintf("%s: %v", FileHTML, err))
		}
		for _, e := range ext {
			v.Problems = append(v.Problems, fmt.Sprintf("%s loads from outside the pack: %s", FileHTML, e))
		}
	}
	sig, err := os.ReadFile(filepath.Join(dir, FileSignature))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.Signature = "unsigned"
		if pub != nil {
			v.Problems = append(v.Problems, FileSignature+": missing, and a key to check it against was given")
		}
		return v, nil
	case err != nil:
		return nil, err
	}
	v.KeySource = "--key"
	if pub == nil {
		v.KeySource = "pack"
		data, err := os.ReadFile(filepath.Join(dir, FilePublicKey))
		if err == nil {
			if block, _ := pem.Decode(data); block != nil {
				pub, err = parsePublicKey(block.Bytes, FilePublicKey)
			} else {
				err = errors.New("no PEM block")
			}
		}
		if err != nil {
			v.Signature, v.KeySource = "unchecked", ""
			v.Problems = append(v.Problems, fmt.Sprintf("%s: no usable public key in the pack (%v); pass --key", FileSignature, err))
			return v, nil
		}
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sig)))
	if err != nil || len(raw) != ed25519.SignatureSize || !ed25519.Verify(pub, manifest, raw) {
		v.Signature = "invalid"
		v.Problems = append(v.Problems, FileSignature+": the signature does not match the manifest for this key")
		return v, nil
	}
	v.Signature = "valid"
	return v, nil
}

// ManifestEntry is one line of MANIFEST.sha256.
type ManifestEntry struct {
	SHA256 string // lower-case hex
	Path   string // relative, slash-separated, inside the pack
}

// ParseManifest reads MANIFEST.sha256 (sha256sum's text format: 64 hex
// digits, two spaces, a relative path). Lines that are not of that form,
// paths leaving the pack and paths listed twice are problems, each naming
// its line; the other lines are returned in order.
func ParseManifest(data []byte) ([]ManifestEntry, []string) {
	var out []ManifestEntry
	var problems []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		hash, name, ok := strings.Cut(text, "  ")
		_, herr := hex.DecodeString(hash)
		clean := path.Clean(name)
		if !ok || len(hash) != 64 || herr != nil || name == "" || clean != name || strings.HasPrefix(clean, "../") || clean == ".." ||
			path.IsAbs(name) || strings.ContainsAny(name, "\\\x00") {
			problems = append(problems, fmt.Sprintf("%s line %d: not \"SHA256  PATH\" with a path inside the pack: %q", FileManifest, line, text))
			continue
		}
		if seen[name] {
			problems = append(problems, fmt.Sprintf("%s line %d: %s listed twice", FileManifest, line, name))
			continue
		}
		seen[name] = true
		out = append(out, ManifestEntry{SHA256: strings.ToLower(hash), Path: name})
	}
	if err := sc.Err(); err != nil {
		problems = append(problems, fmt.Sprintf("%s line %d: %v", FileManifest, line+1, err))
	}
	return out, problems
}

// ParseSince parses a duration with the day suffix d (and w for weeks)
// beside Go's units: "90d", "1w", "36h", "1d12h".
func ParseSince(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	for _, unit := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		if i := strings.Index(rest, unit.suffix); i > 0 {
			n, err := strconv.Atoi(rest[:i])
			if err != nil {
				return 0, fmt.Errorf("%q is not a duration such as 90d, 36h or 90m", s)
			}
			total += time.Duration(n) * unit.d
			rest = rest[i+1:]
		}
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("%q is not a duration such as 90d, 36h or 90m", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	return total, nil
}
