package decoder

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/flowaudit/flowaudit/schemas"
)

func FuzzDecodeNetFlow(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.bin"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A fresh decoder is primed with the captures' templates, so that
		// mutated data sets reach the record decoder.
		d := New()
		var b schemas.FlowBatch
		for _, name := range []string{"softflowd-v9-0.bin", "softflowd-ipfix-0.bin", "softflowd-ipfix-milli-0.bin"} {
			if seed, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
				_ = d.DecodeNetFlow(testExporter, 2055, 1, seed, &b)
			}
		}
		err := d.DecodeNetFlow(testExporter, 2055, 1, data, &b)
		if err == nil && len(data) < ipfixHeaderLen {
			t.Fatalf("no error for %d bytes", len(data))
		}
	})
}

func FuzzDecodeSFlow(f *testing.F) {
	f.Add(sflowDatagram(1, 0, testSFlowSamples(8)...))
	f.Add(sflowDatagram(2, 1, testSFlowSamples(1)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b schemas.FlowBatch
		_ = New().DecodeSFlow(testExporter, 6343, 1, data, &b)
	})
}
