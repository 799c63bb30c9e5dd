package report

import (
	"bytes"
	"fmt"
	"math"
	"strings"

	"github.com/go-pdf/fpdf"
)

// RenderPDF returns report.pdf: the content of index.html paginated, A4,
// with a table of contents (page numbers, internal links, PDF outline)
// and "page N of M" footers, drawn by fpdf without a browser. It is laid
// out twice: the first pass learns the page each section starts on, the
// second writes the contents with those numbers (the contents take the
// same room in both passes).
func RenderPDF(p *Pack) ([]byte, error) {
	pages, err := layoutPDF(p, nil)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := layoutPDFTo(&buf, p, pages.sections); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type pdfLayout struct{ sections []int }

func layoutPDF(p *Pack, known []int) (*pdfLayout, error) {
	var buf bytes.Buffer
	return layoutPDFTo(&buf, p, known)
}

const (
	pdfMargin = 15.0
	pdfWidth  = 210.0 - 2*pdfMargin
)

// pdfColor is an RGB colour.
type pdfColor struct{ r, g, b int }

var (
	colMet      = pdfColor{39, 174, 96}
	colFindings = pdfColor{230, 126, 34}
	colNA       = pdfColor{149, 165, 166}
	colCDE      = pdfColor{192, 57, 43}
)

func resultColor(r string) pdfColor {
	switch r {
	case Met:
		return colMet
	case Findings:
		return colFindings
	}
	return colNA
}

// layoutPDFTo writes the document; sections are the start pages of the
// summary and of each control (nil on the first pass). It returns the
// pages it found.
func layoutPDFTo(out *bytes.Buffer, p *Pack, sections []int) (*pdfLayout, error) {
	r := p.Report
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetMargins(pdfMargin, pdfMargin, pdfMargin)
	pdf.SetAutoPageBreak(true, 18)
	pdf.SetCreationDate(r.GeneratedAt)
	pdf.SetModificationDate(r.GeneratedAt)
	pdf.SetCatalogSort(true)
	pdf.SetCompression(true)
	pdf.SetTitle(r.FrameworkTitle+" evidence pack "+r.ReportID, false)
	pdf.SetCreator("flowaudit report", false)
	pdf.SetProducer("flowaudit", false)
	pdf.AliasNbPages("{nb}")
	tr := pdf.UnicodeTranslatorFromDescriptor("")
	t := func(s string) string { return tr(strings.ReplaceAll(s, "→", "->")) }
	pdf.SetFooterFunc(func() {
		pdf.SetY(-12)
		pdf.SetFont("Helvetica", "", 8)
		pdf.SetTextColor(110, 110, 110)
		pdf.CellFormat(pdfWidth/2, 5, t(r.ReportID), "", 0, "L", false, 0, "")
		pdf.CellFormat(pdfWidth/2, 5, fmt.Sprintf("Page %d of {nb}", pdf.PageNo()), "", 0, "R", false, 0, "")
		pdf.SetTextColor(0, 0, 0)
	})
	titles := []string{"Executive summary"}
	for _, c := range r.Controls {
		titles = append(titles, c.ID+" "+c.Title)
	}
	links := make([]int, len(titles))
	for i := range links {
		links[i] = pdf.AddLink()
	}
	heading := func(size float64, text string) {
		pdf.SetFont("Helvetica", "B", size)
		pdf.MultiCell(pdfWidth, size*0.5, t(text), "", "L", false)
		pdf.Ln(1.5)
	}
	para := func(bold, text string) {
		pdf.SetFont("Helvetica", "B", 9.5)
		pdf.Write(4.8, t(bold+" "))
		pdf.SetFont("Helvetica", "", 9.5)
		pdf.Write(4.8, t(text))
		pdf.Ln(6)
	}
	badge := func(result string) {
		c := resultColor(result)
		pdf.SetFillColor(c.r, c.g, c.b)
		pdf.SetTextColor(255, 255, 255)
		pdf.SetFont("Helvetica", "B", 9)
		w := pdf.GetStringWidth(ResultText(result)) + 6
		pdf.CellFormat(w, 5.5, ResultText(result), "", 0, "C", true, 0, "")
		pdf.SetTextColor(0, 0, 0)
	}
	kvTable := func(rows [][2]string, keyW float64) {
		pdf.SetFont("Helvetica", "", 9)
		pdf.SetDrawColor(210, 210, 210)
		for _, row := range rows {
			pdf.SetFont("Helvetica", "B", 9)
			pdf.CellFormat(keyW, 5.5, t(row[0]), "1", 0, "L", false, 0, "")
			pdf.SetFont("Helvetica", "", 9)
			pdf.CellFormat(35, 5.5, t(row[1]), "1", 1, "R", false, 0, "")
		}
		pdf.Ln(3)
	}

	// Title page and contents.
	pdf.AddPage()
	heading(18, r.FrameworkTitle+" evidence pack")
	pdf.SetFont("Helvetica", "", 9.5)
	cde := strings.Join(r.CDESegments, ", ")
	if cde == "" {
		cde = "none tagged"
	}
	pdf.MultiCell(pdfWidth, 4.8, t(fmt.Sprintf("Report %s, generated %s.\nWindow %s to %s.\nPolicy %s (SHA-256 %s; %d segments, %d rules, default %s). CDE: %s.",
		r.ReportID, r.GeneratedAt.Format("2006-01-02 15:04:05 UTC"), r.Window.From.Format("2006-01-02 15:04:05 UTC"),
		r.Window.To.Format("2006-01-02 15:04:05 UTC"), r.Policy.File, r.Policy.SHA256, r.Policy.Segments, r.Policy.Rules, r.Policy.Default, cde)), "", "L", false)
	pdf.Ln(6)
	heading(14, "Contents")
	found := make([]int, len(titles))
	for i, title := range titles {
		page := "?"
		if sections != nil {
			page = fmt.Sprint(sections[i])
		}
		pdf.SetFont("Helvetica", "", 10)
		y := pdf.GetY()
		lines := pdf.SplitText(t(title), pdfWidth-20)
		pdf.MultiCell(pdfWidth-20, 5.5, strings.Join(lines, "\n"), "", "L", false)
		h := pdf.GetY() - y
		pdf.SetXY(pdfMargin+pdfWidth-20, y)
		pdf.CellFormat(20, 5.5, page, "", 1, "R", false, 0, "")
		pdf.SetY(y + h)
		pdf.Link(pdfMargin, y, pdfWidth, h, links[i])
	}

	// Executive summary.
	pdf.AddPage()
	found[0] = pdf.PageNo()
	pdf.SetLink(links[0], -1, -1)
	pdf.Bookmark(titles[0], 0, -1)
	heading(15, titles[0])
	kvTable(SummaryRows(r.Summary), 80)
	pdf.SetFont("Helvetica", "B", 9)
	pdf.CellFormat(30, 5.5, "Control", "1", 0, "L", false, 0, "")
	pdf.CellFormat(30, 5.5, "Result", "1", 0, "L", false, 0, "")
	pdf.CellFormat(pdfWidth-60, 5.5, "Title", "1", 1, "L", false, 0, "")
	for _, c := range r.Controls {
		pdf.SetFont("Helvetica", "", 8.5)
		lines := pdf.SplitText(t(c.Title), pdfWidth-62)
		h := 4.5 * float64(len(lines))
		if pdf.GetY()+h > 297-20 {
			pdf.AddPage()
		}
		y := pdf.GetY()
		pdf.CellFormat(30, h, t(c.ID), "1", 0, "L", false, 0, "")
		col := resultColor(c.Result)
		pdf.SetTextColor(col.r, col.g, col.b)
		pdf.SetFont("Helvetica", "B", 8.5)
		pdf.CellFormat(30, h, ResultText(c.Result), "1", 0, "L", false, 0, "")
		pdf.SetTextColor(0, 0, 0)
		pdf.SetFont("Helvetica", "", 8.5)
		pdf.MultiCell(pdfWidth-60, 4.5, strings.Join(lines, "\n"), "1", "L", false)
		pdf.SetY(y + h)
	}
	pdf.AddPage()
	heading(12, "Data-flow diagram (observed)")
	pdf.SetFont("Helvetica", "", 9)
	pdf.MultiCell(pdfWidth, 4.5, t("Segments and the traffic observed between them in the window, from the client segment to the segment offering the service; "+
		"CDE segments in red, edges carrying violations dashed red, width by flows. The rows are in evidence/segment_edges.csv."), "", "L", false)
	pdf.Ln(2)
	drawDiagram(pdf, layoutDiagram(r.DataFlow), t)

	// One section per control.
	for i, c := range r.Controls {
		pdf.AddPage()
		found[i+1] = pdf.PageNo()
		pdf.SetLink(links[i+1], -1, -1)
		pdf.Bookmark(titles[i+1], 0, -1)
		heading(14, titles[i+1])
		badge(c.Result)
		pdf.Ln(8)
		for _, ch := range c.Checks {
			heading(11, ch.Title)
			badge(ch.Result)
			pdf.Ln(7)
			para("What was checked.", ch.Checked)
			para("Result.", ResultText(ch.Result)+": "+ch.Reason+".")
			kvTable(NumberRows(ch.Numbers), 80)
			if len(ch.Findings) > 0 {
				pdf.SetFont("Helvetica", "B", 9.5)
				pdf.CellFormat(pdfWidth, 5, "Findings.", "", 1, "L", false, 0, "")
				pdf.SetFont("Helvetica", "", 9)
				for _, f := range ch.Findings {
					pdf.MultiCell(pdfWidth, 4.5, t("- "+f), "", "L", false)
				}
				pdf.Ln(2)
			}
			para("Evidence.", strings.Join(ch.Evidence, ", "))
			pdf.Ln(3)
		}
	}
	pdf.AddPage()
	heading(12, "Evidence files")
	pdf.SetFont("Helvetica", "", 9)
	pdf.MultiCell(pdfWidth, 4.5, t("Every number is the sum or count of rows of these files, beside this PDF in the pack. MANIFEST.sha256 lists the SHA-256 of every file: "+
		"check it with \"sha256sum -c MANIFEST.sha256\" or \"flowaudit report verify DIR\"."), "", "L", false)
	pdf.Ln(2)
	for _, e := range r.Evidence {
		pdf.CellFormat(pdfWidth, 5, t("- "+e), "", 1, "L", false, 0, "")
	}
	if err := pdf.Output(out); err != nil {
		return nil, err
	}
	return &pdfLayout{sections: found}, nil
}

// drawDiagram draws d scaled to the page width below the current line.
func drawDiagram(pdf *fpdf.Fpdf, d diagram, t func(string) string) {
	s := pdfWidth / d.W
	x0, y0 := pdfMargin, pdf.GetY()
	if y0+d.H*s > 297-20 {
		pdf.AddPage()
		y0 = pdf.GetY()
	}
	X := func(x float64) float64 { return x0 + x*s }
	Y := func(y float64) float64 { return y0 + y*s }
	for _, e := range d.Edges {
		c := pdfColor{85, 85, 85}
		if e.Violations > 0 {
			c = colCDE
			pdf.SetDashPattern([]float64{2, 1}, 0)
		}
		pdf.SetDrawColor(c.r, c.g, c.b)
		pdf.SetFillColor(c.r, c.g, c.b)
		pdf.SetLineWidth(e.Width * s)
		pdf.Line(X(e.X1), Y(e.Y1), X(e.X2), Y(e.Y2))
		pdf.SetDashPattern(nil, 0)
		// Arrowhead at the server end.
		a := math.Atan2(e.Y2-e.Y1, e.X2-e.X1)
		const l, w = 12.0, 5.0
		tip := fpdf.PointType{X: X(e.X2 + math.Cos(a)*4), Y: Y(e.Y2 + math.Sin(a)*4)}
		left := fpdf.PointType{X: X(e.X2 - math.Cos(a)*l + math.Sin(a)*w), Y: Y(e.Y2 - math.Sin(a)*l - math.Cos(a)*w)}
		right := fpdf.PointType{X: X(e.X2 - math.Cos(a)*l - math.Sin(a)*w), Y: Y(e.Y2 - math.Sin(a)*l + math.Cos(a)*w)}
		pdf.Polygon([]fpdf.PointType{tip, left, right}, "F")
		pdf.SetFont("Helvetica", "", 6.5)
		pdf.SetTextColor(c.r, c.g, c.b)
		label := humanCount(e.Flows)
		pdf.Text(X(e.LX)-pdf.GetStringWidth(label)/2, Y(e.LY), label)
	}
	pdf.SetLineWidth(0.2)
	for _, n := range d.Nodes {
		fill, stroke, lw := pdfColor{238, 243, 248}, pdfColor{91, 122, 153}, 0.5
		switch {
		case n.CDE:
			fill, stroke, lw = pdfColor{253, 236, 234}, colCDE, 1.2
		case n.External:
			fill, stroke = pdfColor{244, 244, 244}, pdfColor{153, 153, 153}
		}
		pdf.SetFillColor(fill.r, fill.g, fill.b)
		pdf.SetDrawColor(stroke.r, stroke.g, stroke.b)
		pdf.SetLineWidth(lw)
		pdf.Circle(X(n.X), Y(n.Y), n.R*s, "FD")
		pdf.SetFont("Helvetica", "B", 8.5)
		pdf.SetTextColor(0, 0, 0)
		name := t(n.Segment)
		pdf.Text(X(n.X)-pdf.GetStringWidth(name)/2, Y(n.Y)+1, name)
		if n.CDE {
			pdf.SetFont("Helvetica", "", 6.5)
			pdf.SetTextColor(colCDE.r, colCDE.g, colCDE.b)
			pdf.Text(X(n.X)-pdf.GetStringWidth("CDE")/2, Y(n.Y)+4.5, "CDE")
		}
	}
	pdf.SetTextColor(0, 0, 0)
	pdf.SetDrawColor(0, 0, 0)
	pdf.SetLineWidth(0.2)
	pdf.SetY(y0 + d.H*s + 4)
}
