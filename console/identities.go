package console

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/flowaudit/flowaudit/audit"
)

// identitiesData is the /identities page: the identity access review of
// `flowaudit audit identities` over the page's range.
type identitiesData struct {
	NoPolicy bool
	Rev      *audit.IdentityReview
	Rows     []identityRow
	Share    string // unattributed share, as a percentage
}

// identityRow is one identity × destination × service, ready to print.
type identityRow struct {
	audit.IdentityAccess
	From, Dst, Service, Rules string
	FlowsHref                 string
}

func (s *Server) reviewIdentities(r *http.Request, p params) (*identitiesData, error) {
	m, err := s.loadPolicy()
	if err != nil {
		return nil, err
	}
	if m == nil {
		return &identitiesData{NoPolicy: true}, nil
	}
	edges, err := s.deps.Reader.IdentityEdges(r.Context(), p.window)
	if err != nil {
		return nil, err
	}
	sessions, err := s.deps.Reader.AccessSessions(r.Context(), p.window)
	if err != nil {
		return nil, err
	}
	rev := audit.ReviewIdentities(edges, sessions, m, audit.IdentityOptions{Window: p.window, Identity: p.Identity})
	d := &identitiesData{Rev: rev, Share: fmt.Sprintf("%.2f%%", 100*rev.Unattributed.Share)}
	for _, a := range rev.Identities {
		row := identityRow{IdentityAccess: a, From: strings.Join(a.SrcSegments, ", "), Dst: a.DstSegment,
			Rules: strings.Join(a.Rules, ", ")}
		if row.Dst == "" {
			row.Dst = "?"
		}
		if a.DstWorkload != "" {
			row.Dst += " / " + a.DstWorkload
		}
		row.Service = protoName(a.Proto)
		if a.DstPort != 0 {
			row.Service = fmt.Sprintf("%d/%s", a.DstPort, protoName(a.Proto))
		}
		if a.Flows > 0 {
			kv := []string{"identity", a.Identity, "dst_segment", a.DstSegment}
			if a.DstPort != 0 {
				kv = append(kv, "port", fmt.Sprint(a.DstPort))
			}
			row.FlowsHref = "/flows?" + string(p.Query(kv...))
		}
		d.Rows = append(d.Rows, row)
	}
	return d, nil
}

func (s *Server) handleIdentities(w http.ResponseWriter, r *http.Request) {
	p, ok := s.params(w, r, "identities", "7d")
	if !ok {
		return
	}
	pg := page{Title: "Identities", Active: "identities", P: p}
	d, err := s.reviewIdentities(r, p)
	if err != nil {
		s.fail(w, pg, http.StatusBadGateway, err)
		return
	}
	pg.Data = d
	s.render(w, "identities.html", pg)
}

// handleIdentitiesCSV serves the review sheet of `audit identities
// --format csv` for the page's range.
func (s *Server) handleIdentitiesCSV(w http.ResponseWriter, r *http.Request) {
	p, err := parseParams(r.URL.Query(), s.deps.Now(), "7d")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	d, err := s.reviewIdentities(r, p)
	if err == nil && d.NoPolicy {
		err = errors.New("the configuration has no policy.file: the review needs the policy whose segments label the traffic")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	var buf bytes.Buffer
	if err := audit.WriteIdentityCSV(&buf, d.Rev); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="identity-review.csv"`)
	_, _ = w.Write(buf.Bytes())
}
