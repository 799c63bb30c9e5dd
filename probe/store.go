package probe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/flowaudit/flowaudit/schemas"
)

// Alerts returns the segmentation_breach alert of every breach in rep.
// IDs are deterministic (run, source, target, port, protocol), so storing
// a run twice, or the same alert through the alerts topic and directly,
// keeps one alert. Severity is critical on a segment tagged sensitive or
// pci-cde, high otherwise.
func Alerts(rep *Report) []schemas.Alert {
	var out []schemas.Alert
	for _, res := range rep.Results {
		if res.Result != OutcomeBreach {
			continue
		}
		sev := schemas.SeverityHigh
		if res.Sensitive {
			sev = schemas.SeverityCritical
		}
		t := uint64(res.Time.UnixNano())
		evidence, _ := json.Marshal(map[string]any{
			"run_id": rep.RunID, "prober": rep.Prober, "expected": res.Expected, "observed": res.Observed,
			"rtt_ms": float64(res.RTT.Microseconds()) / 1000, "dst_workload": res.DstWorkload,
		})
		src := res.SrcSegment
		if res.SrcAddr.IsValid() {
			src = res.SrcAddr.String() + " (" + res.SrcSegment + ")"
		}
		out = append(out, schemas.Alert{
			ID:   alertID(rep.RunID, res.SrcAddr, res.DstAddr, res.DstPort, res.Proto),
			Time: t, Kind: schemas.AlertSegmentationBreach, Severity: sev,
			SrcAddr: addrOrZero(res.SrcAddr), DstAddr: schemas.AddrFromNetip(res.DstAddr),
			SrcSegment: res.SrcSegment, DstSegment: res.DstSegment, DstPort: res.DstPort, Proto: res.Proto,
			FirstSeen: t, LastSeen: t, Count: 1,
			Summary: fmt.Sprintf("probe from %s reached %s (%s) on %s, which the policy denies",
				src, res.DstAddr, res.DstSegment, portName(res.DstPort, res.Proto)),
			Evidence: string(evidence),
		})
	}
	return out
}

func alertID(run string, src, dst netip.Addr, port uint16, proto uint8) string {
	h := sha256.New()
	for _, part := range []string{schemas.AlertSegmentationBreach, run, addrString(src), dst.String(),
		strconv.Itoa(int(port)), strconv.Itoa(int(proto))} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func addrOrZero(a netip.Addr) schemas.Addr {
	if !a.IsValid() {
		return schemas.Addr{}
	}
	return schemas.AddrFromNetip(a)
}

// Store writes rep's attempts to database.probe_results and its breaches
// (Alerts) to database.alerts, the way the sink writes alerts. modern is
// the server generation (ClickHouse >= 23.8: IPv6 columns).
func Store(ctx context.Context, conn driver.Conn, database string, modern bool, rep *Report) error {
	addr := func(a schemas.Addr) any {
		if modern {
			return netip.AddrFrom16(a)
		}
		return a[:]
	}
	if len(rep.Results) > 0 {
		batch, err := conn.PrepareBatch(ctx, schemas.ProbeResultsTable.InsertSQL(database))
		if err != nil {
			return fmt.Errorf("prepare insert into probe_results: %w", err)
		}
		defer batch.Abort()
		for _, res := range rep.Results {
			if err := batch.Append(res.Time, rep.RunID, rep.Prober, addr(addrOrZero(res.SrcAddr)), res.SrcSegment,
				addr(schemas.AddrFromNetip(res.DstAddr)), res.DstSegment, res.DstWorkload, res.DstPort, res.Proto,
				string(res.Expected), string(res.Observed), string(res.Result), res.Rule,
				uint32(min(res.RTT.Milliseconds(), 1<<32-1)), res.Detail); err != nil {
				return fmt.Errorf("probe_results row: %w", err)
			}
		}
		if err := batch.Send(); err != nil {
			return fmt.Errorf("send %d rows to probe_results: %w", len(rep.Results), err)
		}
	}
	alerts := Alerts(rep)
	if len(alerts) == 0 {
		return nil
	}
	cols := []string{"alert_id", "time", "kind", "severity", "src_addr", "dst_addr", "src_segment", "dst_segment", "src_identity",
		"dst_port", "proto", "first_seen", "last_seen", "count", "bytes", "summary", "evidence", "version"}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+schemas.QualifiedName(database, schemas.AlertsTable.Name)+" ("+strings.Join(cols, ", ")+")")
	if err != nil {
		return fmt.Errorf("prepare insert into alerts: %w", err)
	}
	defer batch.Abort()
	for _, a := range alerts {
		if err := batch.Append(a.ID, time.Unix(0, int64(a.Time)), a.Kind, a.Severity.String(), addr(a.SrcAddr), addr(a.DstAddr),
			a.SrcSegment, a.DstSegment, a.SrcIdentity, a.DstPort, a.Proto, time.Unix(0, int64(a.FirstSeen)),
			time.Unix(0, int64(a.LastSeen)), a.Count, a.Bytes, a.Summary, a.Evidence, a.LastSeen); err != nil {
			return fmt.Errorf("alerts row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("send %d rows to alerts: %w", len(alerts), err)
	}
	return nil
}
