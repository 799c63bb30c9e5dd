package access

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// bodyLine is one line eachLine handed over.
type bodyLine struct {
	N    int
	Line string
}

func streamLines(data []byte, size int, oneByte bool) ([]bodyLine, error) {
	var r = bytes.NewReader(data)
	br := bufio.NewReaderSize(r, size)
	if oneByte {
		br = bufio.NewReaderSize(iotest.OneByteReader(r), size)
	}
	var out []bodyLine
	err := eachLine(br, func(n int, line []byte) { out = append(out, bodyLine{n, string(line)}) })
	return out, err
}

// referenceLines is what eachLine must hand over, from the whole body: a
// line of size bytes or more is passed as its first size bytes.
func referenceLines(data []byte, size int) []bodyLine {
	var out []bodyLine
	if len(data) == 0 {
		return nil
	}
	segs := bytes.Split(data, []byte("\n"))
	if len(segs[len(segs)-1]) == 0 {
		segs = segs[:len(segs)-1]
	}
	for i, s := range segs {
		switch {
		case len(s) >= size:
			out = append(out, bodyLine{i + 1, string(s[:size])})
		case len(bytes.TrimSpace(bytes.TrimRight(s, "\r"))) > 0:
			out = append(out, bodyLine{i + 1, string(bytes.TrimRight(s, "\r"))})
		}
	}
	return out
}

func TestEachLine(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []bodyLine
	}{
		{"ndjson", "a\nb\r\n\n  \nc", []bodyLine{{1, "a"}, {2, "b"}, {5, "c"}}},
		{"too long", "short\n" + strings.Repeat("x", 40) + "\nafter\n", []bodyLine{{1, "short"}, {2, strings.Repeat("x", 16)}, {3, "after"}}},
		{"too long at the end", strings.Repeat("y", 20), []bodyLine{{1, strings.Repeat("y", 16)}}},
		{"exactly one less than the buffer", strings.Repeat("z", 15) + "\n", []bodyLine{{1, strings.Repeat("z", 15)}}},
		{"empty", "", nil},
	} {
		for _, oneByte := range []bool{false, true} {
			got, err := streamLines([]byte(tc.body), 16, oneByte)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("%s (one-byte reads %v) (-got +want):\n%s", tc.name, oneByte, diff)
			}
		}
	}
}

// FuzzBodyDecode: the streaming decoders hand over exactly what decoding
// the whole body would, however the bytes arrive.
func FuzzBodyDecode(f *testing.F) {
	for _, s := range []string{"a\nb\r\n", `[{"a":1}, 2, "x"]`, "[1,", strings.Repeat("q", 40) + "\nx", " [ ] ", "\n\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, oneByte := range []bool{false, true} {
			got, err := streamLines(data, 16, oneByte)
			if err != nil {
				t.Fatalf("eachLine: %v", err)
			}
			if diff := cmp.Diff(got, referenceLines(data, 16)); diff != "" {
				t.Fatalf("lines (one-byte reads %v) (-got +want):\n%s", oneByte, diff)
			}
		}
		var whole []json.RawMessage
		if json.Unmarshal(data, &whole) != nil || bytes.TrimSpace(data)[0] != '[' {
			return
		}
		var elems []json.RawMessage
		err := eachArrayElement(iotest.OneByteReader(bytes.NewReader(data)), func(_ int, e []byte) {
			elems = append(elems, append(json.RawMessage(nil), e...))
		})
		if err != nil {
			t.Fatalf("eachArrayElement on a valid array: %v", err)
		}
		if diff := cmp.Diff(elems, whole, cmp.Comparer(func(a, b json.RawMessage) bool { return bytes.Equal(a, b) })); diff != "" && len(whole) > 0 {
			t.Fatalf("elements (-got +want):\n%s", diff)
		}
	})
}
