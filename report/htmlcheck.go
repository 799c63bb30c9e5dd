package report

import (
	"bytes"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/net/html"
)

// urlAttrs are the attributes through which HTML and SVG load or link a
// resource.
var urlAttrs = map[string]bool{"src": true, "href": true, "xlink:href": true, "srcset": true, "poster": true,
	"data": true, "action": true, "formaction": true, "background": true, "manifest": true, "ping": true, "cite": true}

var cssURL = regexp.MustCompile(`(?i)url\(\s*['"]?([^'")]*)|@import\s+['"]?([^'";\s]+)`)

// ExternalURLs returns every reference of page to something outside the
// pack: an absolute or scheme-relative URL in a URL attribute, a style
// attribute or a style element, and every element that loads a resource
// by nature (script, link, iframe, object, embed). Relative links (to
// the evidence files) and fragments are fine.
func ExternalURLs(page []byte) ([]string, error) {
	doc, err := html.Parse(bytes.NewReader(page))
	if err != nil {
		return nil, err
	}
	var out []string
	external := func(where, ref string) {
		ref = strings.TrimSpace(ref)
		if ref == "" || strings.HasPrefix(ref, "#") {
			return
		}
		u, err := url.Parse(ref)
		if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(ref, "//") {
			out = append(out, fmt.Sprintf("%s: %s", where, ref))
		}
	}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "link", "iframe", "object", "embed", "base", "img", "video", "audio", "source":
				out = append(out, "<"+n.Data+"> element")
			}
			for _, a := range n.Attr {
				name := strings.ToLower(a.Key)
				if a.Namespace != "" {
					name = a.Namespace + ":" + name
				}
				switch {
				case urlAttrs[name]:
					for _, part := range strings.Split(a.Val, ",") {
						f := strings.Fields(part)
						if len(f) > 0 {
							external("<"+n.Data+" "+name+">", f[0])
						}
					}
				case strings.HasPrefix(name, "on"):
					out = append(out, fmt.Sprintf("<%s %s> event handler", n.Data, name))
				default:
					for _, m := range cssURL.FindAllStringSubmatch(a.Val, -1) {
						external("<"+n.Data+" "+name+">", m[1]+m[2])
					}
				}
			}
			if n.Data == "style" {
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					for _, m := range cssURL.FindAllStringSubmatch(c.Data, -1) {
						external("<style>", m[1]+m[2])
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return out, nil
}
