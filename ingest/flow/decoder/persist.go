package decoder

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"slices"

	"github.com/flowaudit/flowaudit/internal/atomicfile"
	"github.com/flowaudit/flowaudit/schemas"
)

// templateFileVersion is bumped on incompatible changes to the file.
// Version 2 scopes IPFIX templates by exporter port (transport session);
// a version 1 file is still read, without its IPFIX entries, whose
// session it does not know (exporters resend templates periodically).
const templateFileVersion = 2

// templateFile is the persisted form of a Decoder's learnt state. JSON
// keeps it inspectable; it is written rarely and read once.
type templateFile struct {
	Version   int              `json:"version"`
	Templates []templateRecord `json:"templates"`
	Domains   []domainRecord   `json:"domains"`
}

type templateRecord struct {
	Exporter   netip.Addr  `json:"exporter"`
	Port       uint16      `json:"exporter_port,omitempty"` // IPFIX only
	NetFlow    uint16      `json:"netflow_version"`
	Domain     uint32      `json:"domain"`
	ID         uint16      `json:"id"`
	Options    bool        `json:"options,omitempty"`
	ScopeCount uint16      `json:"scope_count,omitempty"`
	Fields     []fieldSpec `json:"fields"`
}

type domainRecord struct {
	Exporter     netip.Addr `json:"exporter"`
	Port         uint16     `json:"exporter_port,omitempty"` // IPFIX only
	NetFlow      uint16     `json:"netflow_version"`
	Domain       uint32     `json:"domain"`
	SamplingRate uint32     `json:"sampling_rate,omitempty"`
	SysInitMs    uint64     `json:"system_init_ms,omitempty"`
}

// SaveTemplates writes all templates and sampling state to the
// WithTemplateFile path, atomically (temporary file, fsync, rename), if
// anything changed since the last save or load. Without WithTemplateFile
// it does nothing. It is safe to call concurrently with decoding, e.g.
// from a ticker and at shutdown.
func (d *Decoder) SaveTemplates() error {
	if d.path == "" {
		return nil
	}
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	gen := d.generation.Load()
	if gen == d.savedGen {
		return nil
	}
	file := templateFile{Version: templateFileVersion}
	d.templates.each(func(k templateKey, t *template) {
		file.Templates = append(file.Templates, templateRecord{
			Exporter: k.exporter.Netip(), Port: k.port, NetFlow: k.version, Domain: k.domain, ID: k.id,
			Options: t.options, ScopeCount: t.scopeCount, Fields: t.fields,
		})
	})
	d.domains.each(func(k domainKey, s domainState) {
		file.Domains = append(file.Domains, domainRecord{
			Exporter: k.exporter.Netip(), Port: k.port, NetFlow: k.version, Domain: k.domain,
			SamplingRate: s.samplingRate, SysInitMs: s.sysInitMs,
		})
	})
	// A stable order keeps the file diffable and saves idempotent.
	slices.SortFunc(file.Templates, func(a, b templateRecord) int {
		if c := a.Exporter.Compare(b.Exporter); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		if a.NetFlow != b.NetFlow {
			return int(a.NetFlow) - int(b.NetFlow)
		}
		if a.Domain != b.Domain {
			if a.Domain < b.Domain {
				return -1
			}
			return 1
		}
		return int(a.ID) - int(b.ID)
	})
	slices.SortFunc(file.Domains, func(a, b domainRecord) int {
		if c := a.Exporter.Compare(b.Exporter); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		if a.NetFlow != b.NetFlow {
			return int(a.NetFlow) - int(b.NetFlow)
		}
		if a.Domain < b.Domain {
			return -1
		}
		if a.Domain > b.Domain {
			return 1
		}
		return 0
	})
	data, err := json.Marshal(&file)
	if err != nil {
		return fmt.Errorf("unable to encode flow templates: %w", err)
	}
	if err := atomicfile.Write(d.path, data); err != nil {
		return fmt.Errorf("unable to save flow templates: %w", err)
	}
	d.savedGen = gen
	return nil
}

// LoadTemplates (re)reads the WithTemplateFile path and merges its
// templates and sampling state into the Decoder; state learnt from the
// network since takes precedence only in that it may overwrite the loaded
// entries later. A missing file is not an error. New calls it and only
// logs its error; call it directly to handle the error yourself.
func (d *Decoder) LoadTemplates() error {
	if d.path == "" {
		return nil
	}
	data, err := os.ReadFile(d.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unable to read flow templates: %w", err)
	}
	var file templateFile
	if err := json.Unmarshal(data, &file); err != nil {
		return fmt.Errorf("unable to decode flow templates from %s: %w", d.path, err)
	}
	if file.Version != templateFileVersion && file.Version != 1 {
		return fmt.Errorf("unable to decode flow templates from %s: file version %d, want %d", d.path, file.Version, templateFileVersion)
	}
	templates := map[templateKey]*template{}
	for _, r := range file.Templates {
		if file.Version == 1 && r.NetFlow == 10 {
			continue
		}
		if r.NetFlow != 9 && r.NetFlow != 10 || r.ID < 256 || int(r.ScopeCount) > len(r.Fields) {
			return fmt.Errorf("unable to decode flow templates from %s: invalid template %d of %s", d.path, r.ID, r.Exporter)
		}
		t := compileTemplate(r.NetFlow, r.Fields, r.ScopeCount, r.Options)
		if t == nil {
			return fmt.Errorf("unable to decode flow templates from %s: template %d of %s has no usable record", d.path, r.ID, r.Exporter)
		}
		if t.plausible(r.ID) != nil {
			// Saved by a version without the check: dropped, as it would
			// be refused from the network.
			continue
		}
		templates[templateKey{exporter: schemas.AddrFromNetip(r.Exporter), port: r.Port, domain: r.Domain, id: r.ID, version: r.NetFlow}] = t
	}
	domains := map[domainKey]domainState{}
	for _, r := range file.Domains {
		if file.Version == 1 && r.NetFlow == 10 {
			continue
		}
		domains[domainKey{exporter: schemas.AddrFromNetip(r.Exporter), port: r.Port, domain: r.Domain, version: r.NetFlow}] =
			domainState{samplingRate: r.SamplingRate, sysInitMs: r.SysInitMs}
	}

	d.writeMu.Lock()
	defer d.writeMu.Unlock()
	// In a stable order, so that the limits keep the same templates on
	// every load.
	keys := slices.SortedFunc(maps.Keys(templates), compareTemplateKeys)
	for _, k := range keys {
		_ = d.storeTemplate(k, templates[k]) // beyond the limits: dropped
	}
	for k, s := range domains {
		if _, ok := d.domains.get(k); ok || d.domains.len() < d.maxTemplates {
			d.domains.set(k, s)
		}
	}
	d.saveMu.Lock()
	// What was just loaded is on disk already.
	d.savedGen = d.generation.Load()
	d.saveMu.Unlock()
	return nil
}

func compareTemplateKeys(a, b templateKey) int {
	if c := bytes.Compare(a.exporter[:], b.exporter[:]); c != 0 {
		return c
	}
	return cmp.Or(cmp.Compare(a.version, b.version), cmp.Compare(a.port, b.port), cmp.Compare(a.domain, b.domain), cmp.Compare(a.id, b.id))
}
