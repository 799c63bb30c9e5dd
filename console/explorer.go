package console

import (
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/flowaudit/flowaudit/query"
)

// The flows explorer's charts, computed here as SVG like the map: a time
// series stacked by one dimension and a Sankey diagram of client segment →
// service port → server segment → client identity, each value outside the
// top N (by the chosen metric) folded into "other".

const (
	chartW, chartH         = 960, 260
	chartLeft, chartBottom = 64, 28
	chartTop               = 10
	sankeyW, sankeyH       = 960, 420
	sankeyNodeW            = 14
	sankeyPad              = 6
	otherLabel             = "other"
	noneLabel              = "(none)"
)

// palette colours the top values in rank order; "other" is grey.
var palette = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
	"#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#9edae5"}

const otherColour = "#b0b7c0"

func colour(rank int, other bool) string {
	if other {
		return otherColour
	}
	return palette[rank%len(palette)]
}

// stepFor is the bucket of a window: the smallest of the usual steps that
// gives at most 60 buckets.
// A window of whole hours, 6 hours or more, gets buckets of whole hours,
// which the hourly rollup answers.
func stepFor(w query.Window) time.Duration {
	d := w.To.Sub(w.From)
	steps := []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
		time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}
	if d >= 6*time.Hour && w.From.Equal(w.From.Truncate(time.Hour)) && w.To.Equal(w.To.Truncate(time.Hour)) {
		steps = steps[5:]
	}
	for _, s := range steps {
		if d/s <= 60 {
			return s
		}
	}
	return 24 * time.Hour
}

type seriesRect struct {
	X, Y, W, H float64
	Key        string
	Colour     string
	Bucket     string
	Value      uint64
}

type legendItem struct {
	Key    string
	Colour string
	Value  uint64
	Share  string
	Href   string // the flows of this value, when the dimension is a filter
}

type axisTick struct {
	X, Y  float64
	Label string
}

// seriesChart is the stacked time series.
type seriesChart struct {
	W, H          int
	Rects         []seriesRect
	Legend        []legendItem
	XTicks        []axisTick
	YTicks        []axisTick
	Step          string
	PlotX, PlotY  float64
	PlotW, PlotH  float64
	Total         uint64
	Dim, Metric   string
	Buckets, Keys int
}

func metricOf(metric string, flows, bytes uint64) uint64 {
	if metric == "bytes" {
		return bytes
	}
	return flows
}

func keyLabel(k string) string {
	if k == "" {
		return noneLabel
	}
	return k
}

// buildSeries stacks the series' top values (and "other") per bucket.
func buildSeries(keys []query.SeriesKey, w query.Window, step time.Duration, p params) seriesChart {
	c := seriesChart{W: chartW, H: chartH, Dim: p.Dim, Metric: p.Metric, Step: stepLabel(step),
		PlotX: chartLeft, PlotY: chartTop, PlotW: chartW - chartLeft - 10, PlotH: chartH - chartTop - chartBottom}
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := metricOf(p.Metric, keys[i].Flows, keys[i].Bytes), metricOf(p.Metric, keys[j].Flows, keys[j].Bytes)
		if a != b {
			return a > b
		}
		return keys[i].Value < keys[j].Value
	})
	first := w.From.Truncate(step)
	n := int(w.To.Sub(first) / step)
	if w.To.Sub(first)%step != 0 {
		n++
	}
	if n < 1 {
		n = 1
	}
	c.Buckets = n
	// stacks[bucket][rank]: rank len(top) is "other".
	top := min(len(keys), p.Top)
	hasOther := len(keys) > top
	layers := top
	if hasOther {
		layers++
	}
	stacks := make([][]uint64, n)
	for i := range stacks {
		stacks[i] = make([]uint64, layers)
	}
	totals := make([]uint64, layers)
	for rank, k := range keys {
		layer := min(rank, top)
		for _, pt := range k.Points {
			b := int(pt.Start.Sub(first) / step)
			if b < 0 || b >= n {
				continue
			}
			v := metricOf(p.Metric, pt.Flows, pt.Bytes)
			stacks[b][layer] += v
			totals[layer] += v
		}
	}
	var maxStack uint64
	for _, st := range stacks {
		var s uint64
		for _, v := range st {
			s += v
		}
		maxStack = max(maxStack, s)
	}
	for _, t := range totals {
		c.Total += t
	}
	name := func(layer int) string {
		if layer == top {
			return otherLabel
		}
		return keyLabel(keys[layer].Value)
	}
	for layer := 0; layer < layers; layer++ {
		li := legendItem{Key: name(layer), Colour: colour(layer, layer == top), Value: totals[layer]}
		if c.Total > 0 {
			li.Share = fmt.Sprintf("%.1f %%", 100*float64(totals[layer])/float64(c.Total))
		}
		if layer < top {
			li.Href = filterHref(p, p.Dim, keys[layer].Value)
		}
		c.Legend = append(c.Legend, li)
	}
	c.Keys = len(c.Legend)
	bw := c.PlotW / float64(n)
	scale := 0.0
	if maxStack > 0 {
		scale = c.PlotH / float64(maxStack)
	}
	for b, st := range stacks {
		y := c.PlotY + c.PlotH
		for layer, v := range st {
			if v == 0 {
				continue
			}
			h := float64(v) * scale
			y -= h
			c.Rects = append(c.Rects, seriesRect{X: round(c.PlotX + float64(b)*bw), Y: round(y), W: round(math.Max(bw-1, 1)), H: round(h),
				Key: name(layer), Colour: colour(layer, layer == top), Bucket: first.Add(time.Duration(b) * step).UTC().Format(time.RFC3339), Value: v})
		}
	}
	for _, b := range []int{0, n / 2, n - 1} {
		t := first.Add(time.Duration(b) * step).UTC()
		lab := t.Format("15:04")
		if w.To.Sub(w.From) > 24*time.Hour {
			lab = t.Format("01-02 15:04")
		}
		c.XTicks = append(c.XTicks, axisTick{X: round(c.PlotX + (float64(b)+0.5)*bw), Y: c.PlotY + c.PlotH + 16, Label: lab})
	}
	for _, f := range []float64{0, 0.5, 1} {
		v := uint64(math.Round(float64(maxStack) * f))
		lab := fmt.Sprint(v)
		if p.Metric == "bytes" {
			lab = humanBytes(v)
		}
		c.YTicks = append(c.YTicks, axisTick{X: c.PlotX - 6, Y: round(c.PlotY + c.PlotH - c.PlotH*f + 4), Label: lab})
	}
	return c
}

// filterHref is the explorer filtered on one value of a dimension, for
// the dimensions that are filters; "" for the others.
func filterHref(p params, dim, value string) string {
	var kv []string
	switch dim {
	case "src_segment", "dst_segment":
		kv = []string{dim, value}
	case "client_identity":
		kv = []string{"identity", value}
	case "verdict":
		kv = []string{"verdict", value}
	case "exporter":
		kv = []string{"exporter", value}
	default:
		return ""
	}
	if value == "" { // an empty value is no filter
		return ""
	}
	return "/flows?" + p.flowsQuery(append(kv, "page", "")...)
}

// Sankey.

var sankeyStages = []string{"client segment", "service port", "server segment", "client identity"}

type sankeyNode struct {
	Stage      int
	Name       string
	Label      string
	Value      uint64
	X, Y, W, H float64
	Colour     string
	LabelX     float64
	LabelY     float64
	Anchor     string
}

type sankeyLink struct {
	Source, Target string
	Stage          int
	Value          uint64
	Path           string
	Colour         string
}

type sankeyChart struct {
	W, H   int
	Nodes  []sankeyNode
	Links  []sankeyLink
	Heads  []axisTick
	Total  uint64
	Metric string
}

const otherKey = "\x00other"

func pathValues(sp query.SankeyPath) [4]string {
	v := [4]string{sp.ClientSegment, sp.Port, sp.ServerSegment, sp.Identity}
	for i := range v {
		if v[i] == query.SankeyOther {
			v[i] = otherKey
		}
	}
	return v
}

func buildSankey(paths []query.SankeyPath, p params) sankeyChart {
	c := sankeyChart{W: sankeyW, H: sankeyH, Metric: p.Metric}
	// The top values of each stage.
	var keep [4]map[string]bool
	var order [4][]string
	for st := 0; st < 4; st++ {
		tot := map[string]uint64{}
		for _, sp := range paths {
			tot[pathValues(sp)[st]] += metricOf(p.Metric, sp.Flows, sp.Bytes)
		}
		vals := make([]string, 0, len(tot))
		for v := range tot {
			if v != otherKey {
				vals = append(vals, v)
			}
		}
		sort.Slice(vals, func(i, j int) bool {
			if tot[vals[i]] != tot[vals[j]] {
				return tot[vals[i]] > tot[vals[j]]
			}
			return vals[i] < vals[j]
		})
		keep[st] = map[string]bool{}
		for i, v := range vals {
			if i < p.Top {
				keep[st][v] = true
				order[st] = append(order[st], v)
			}
		}
		if _, folded := tot[otherKey]; folded || len(vals) > p.Top {
			order[st] = append(order[st], otherKey)
		}
	}
	fold := func(st int, v string) string {
		if keep[st][v] {
			return v
		}
		return otherKey
	}
	nodeVal := [4]map[string]uint64{{}, {}, {}, {}}
	type lk struct {
		st   int
		a, b string
	}
	linkVal := map[lk]uint64{}
	for _, sp := range paths {
		v := metricOf(p.Metric, sp.Flows, sp.Bytes)
		if v == 0 {
			continue
		}
		vals := pathValues(sp)
		for st := 0; st < 4; st++ {
			nodeVal[st][fold(st, vals[st])] += v
			if st < 3 {
				linkVal[lk{st, fold(st, vals[st]), fold(st+1, vals[st+1])}] += v
			}
		}
		c.Total += v
	}
	if c.Total == 0 {
		return c
	}
	maxNodes := 1
	for st := 0; st < 4; st++ {
		maxNodes = max(maxNodes, len(order[st]))
	}
	top, bottom := 24.0, 8.0
	scale := (float64(sankeyH) - top - bottom - float64(sankeyPad*(maxNodes-1))) / float64(c.Total)
	colW := (float64(sankeyW) - 2*150 - sankeyNodeW) / 3
	pos := map[[2]string]*sankeyNode{}
	for st := 0; st < 4; st++ {
		x := 150 + float64(st)*colW
		c.Heads = append(c.Heads, axisTick{X: round(x + sankeyNodeW/2), Y: 14, Label: sankeyStages[st]})
		y := top
		for rank, v := range order[st] {
			val := nodeVal[st][v]
			if val == 0 {
				continue
			}
			other := v == otherKey
			label := keyLabel(v)
			if other {
				label = otherLabel
			}
			n := sankeyNode{Stage: st, Name: label, Label: fmt.Sprintf("%s %s", label, valueLabel(p.Metric, val)), Value: val,
				X: round(x), Y: round(y), W: sankeyNodeW, H: round(math.Max(float64(val)*scale, 1)), Colour: colour(rank, other)}
			// Labels left of the first column, right of the others.
			n.LabelY = round(n.Y + n.H/2 + 4)
			n.LabelX, n.Anchor = round(x+sankeyNodeW+4), "start"
			if st == 0 {
				n.LabelX, n.Anchor = round(x-4), "end"
			}
			c.Nodes = append(c.Nodes, n)
			y += float64(val)*scale + sankeyPad
		}
	}
	for i := range c.Nodes {
		n := &c.Nodes[i]
		key := n.Name
		if key == otherLabel {
			key = otherKey
		} else if key == noneLabel {
			key = ""
		}
		pos[[2]string{fmt.Sprint(n.Stage), key}] = n
	}
	// Links in the order of their source, then target, stacked on both ends.
	links := make([]lk, 0, len(linkVal))
	for k := range linkVal {
		links = append(links, k)
	}
	rankOf := func(st int, v string) int {
		for i, o := range order[st] {
			if o == v {
				return i
			}
		}
		return len(order[st])
	}
	sort.Slice(links, func(i, j int) bool {
		a, b := links[i], links[j]
		if a.st != b.st {
			return a.st < b.st
		}
		if ra, rb := rankOf(a.st, a.a), rankOf(b.st, b.a); ra != rb {
			return ra < rb
		}
		return rankOf(a.st+1, a.b) < rankOf(b.st+1, b.b)
	})
	outOff, inOff := map[*sankeyNode]float64{}, map[*sankeyNode]float64{}
	type placed struct {
		l      lk
		y0, h  float64
		src    *sankeyNode
		dst    *sankeyNode
		colour string
	}
	var ps []placed
	for _, l := range links {
		src, dst := pos[[2]string{fmt.Sprint(l.st), l.a}], pos[[2]string{fmt.Sprint(l.st + 1), l.b}]
		if src == nil || dst == nil {
			continue
		}
		h := float64(linkVal[l]) * scale
		ps = append(ps, placed{l: l, y0: src.Y + outOff[src], h: h, src: src, dst: dst, colour: src.Colour})
		outOff[src] += h
	}
	// Target ends in the order of their source, so bands do not cross
	// inside a node.
	idx := make([]int, len(ps))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool {
		a, b := ps[idx[i]], ps[idx[j]]
		if a.dst != b.dst {
			return false
		}
		return a.src.Y < b.src.Y
	})
	y1 := make([]float64, len(ps))
	byDst := map[*sankeyNode][]int{}
	for _, i := range idx {
		byDst[ps[i].dst] = append(byDst[ps[i].dst], i)
	}
	for dst, is := range byDst {
		sort.Slice(is, func(a, b int) bool { return ps[is[a]].src.Y < ps[is[b]].src.Y })
		for _, i := range is {
			y1[i] = dst.Y + inOff[dst]
			inOff[dst] += ps[i].h
		}
	}
	for i, pl := range ps {
		x0, x1 := pl.src.X+sankeyNodeW, pl.dst.X
		xm := (x0 + x1) / 2
		h := math.Max(pl.h, 0.5)
		path := fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f L%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f Z",
			x0, pl.y0, xm, pl.y0, xm, y1[i], x1, y1[i], x1, y1[i]+h, xm, y1[i]+h, xm, pl.y0+h, x0, pl.y0+h)
		c.Links = append(c.Links, sankeyLink{Source: pl.src.Name, Target: pl.dst.Name, Stage: pl.l.st, Value: linkVal[pl.l], Path: path, Colour: pl.colour})
	}
	return c
}

// stepLabel names a bucket: 1m, 15m, 1h, 1d.
func stepLabel(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

func valueLabel(metric string, v uint64) string {
	if metric == "bytes" {
		return humanBytes(v)
	}
	return fmt.Sprint(v)
}
