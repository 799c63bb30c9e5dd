package access

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// frames reads every message of stream, rendering too-long ones as
// "TOO_LONG:" and their head.
func frames(stream string, max int, oneByte bool) ([]string, error) {
	var r io.Reader = strings.NewReader(stream)
	if oneByte {
		r = iotest.OneByteReader(r)
	}
	fr := newFrameReader(r, max)
	var out []string
	for {
		msg, err := fr.next()
		var tl *tooLongError
		switch {
		case errors.As(err, &tl):
			out = append(out, "TOO_LONG:"+string(tl.head))
		case errors.Is(err, io.EOF):
			return out, nil
		case err != nil:
			return out, err
		case len(msg) > 0:
			out = append(out, string(msg))
		}
	}
}

func TestFrameReader(t *testing.T) {
	cases := []struct {
		name   string
		stream string
		want   []string
	}{
		{"newline", "<1>a\n<1>b\r\n\n<1>c\n", []string{"<1>a", "<1>b", "<1>c"}},
		{"unterminated last line", "<1>a\n<1>b", []string{"<1>a", "<1>b"}},
		{"octet counting", "4 <1>a5 <1>bc", []string{"<1>a", "<1>bc"}},
		{"octet counting with LF inside and between", "5 <1>a\n\n5 <1>b\n", []string{"<1>a", "<1>b"}},
		{"mixed", "4 <1>a<1>b\n4 <1>c", []string{"<1>a", "<1>b", "<1>c"}},
		{"digits without space are a line", "123abc\n<1>d\n", []string{"123abc", "<1>d"}},
		{"a final line of digits", "<1>a\n42", []string{"<1>a", "42"}},
		{"too long line resyncs at LF", "<1>" + strings.Repeat("x", 20) + "\n<1>ok\n", []string{"TOO_LONG:<1>xxxxxxxxxxxxx", "<1>ok"}},
		{"too long frame is skipped exactly", "20 " + strings.Repeat("y", 20) + "4 <1>z", []string{"TOO_LONG:yyyyyyyyyyyyyyyy", "<1>z"}},
		{"exactly max", strings.Repeat("m", 16) + "\n", []string{strings.Repeat("m", 16)}},
	}
	for _, tc := range cases {
		for _, oneByte := range []bool{false, true} {
			got, err := frames(tc.stream, 16, oneByte)
			if err != nil {
				t.Errorf("%s (one byte reads %v): %v", tc.name, oneByte, err)
				continue
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("%s (one byte reads %v) (-got +want):\n%s", tc.name, oneByte, diff)
			}
		}
	}
}

func TestFrameReaderTruncatedFrame(t *testing.T) {
	_, err := frames("10 <1>a", 16, false)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("error = %v, want io.ErrUnexpectedEOF for a frame cut short", err)
	}
}

// FuzzFrameReader: no input makes the reader panic, return a message
// over the bound or stop consuming.
func FuzzFrameReader(f *testing.F) {
	for _, s := range []string{"<1>a\n", "4 <1>a", "999999999 x", "12", "\r\n\r\n", "1 \n2 \n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := newFrameReader(bytes.NewReader(data), 32)
		for i := 0; i <= len(data); i++ {
			msg, err := fr.next()
			var tl *tooLongError
			if errors.As(err, &tl) {
				if len(tl.head) != 32 {
					t.Fatalf("too-long head of %d bytes", len(tl.head))
				}
				continue
			}
			if err != nil {
				return
			}
			if len(msg) > 32 {
				t.Fatalf("message of %d bytes over the bound", len(msg))
			}
		}
		t.Fatalf("reader did not reach the end of %d bytes", len(data))
	})
}

func BenchmarkFrameReader(b *testing.B) {
	msg := "<38>Jan  2 03:04:05 bastion sshd[4242]: Accepted password for alice from 10.1.2.3 port 52222 ssh2"
	var stream strings.Builder
	for i := 0; i < 1000; i++ {
		if i%2 == 0 {
			stream.WriteString(msg + "\n")
		} else {
			fmt.Fprintf(&stream, "%d %s", len(msg), msg)
		}
	}
	data := stream.String()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		fr := newFrameReader(strings.NewReader(data), 64<<10)
		for {
			if _, err := fr.next(); err != nil {
				break
			}
		}
	}
}
