package detect

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDefaultConfiguration(t *testing.T) {
	cfg := DefaultConfiguration()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	if cfg.ConsumerGroup != "flowaudit-detect" || cfg.CheckpointInterval != 30*time.Second || !cfg.Baseline || cfg.InstanceID == "" {
		t.Errorf("defaults = %+v", cfg)
	}
	bad := cfg
	bad.CheckpointInterval = 0
	bad.ConsumerGroup = ""
	err := bad.Validate()
	for _, key := range []string{"detect.checkpoint_interval", "detect.consumer_group"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("Validate() = %v, want an error naming %s", err, key)
		}
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	offsets := map[string]map[int32]int64{
		"flowaudit.enriched.v1":     {0: 10, 3: 1 << 40},
		"flowaudit.detect-keyed.v1": {1: 0},
	}
	snapshot := []byte("engine state \x00\x01")
	gotOffsets, gotSnap, err := decodeCheckpoint(encodeCheckpoint(offsets, snapshot))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(gotOffsets, offsets); diff != "" {
		t.Errorf("offsets (-got +want):\n%s", diff)
	}
	if string(gotSnap) != string(snapshot) {
		t.Errorf("snapshot = %q, want %q", gotSnap, snapshot)
	}
	full := encodeCheckpoint(offsets, snapshot)
	for _, n := range []int{0, 1, 4, 7, 20} {
		if _, _, err := decodeCheckpoint(full[:n]); err == nil && n < 5 {
			t.Errorf("truncated to %d bytes: no error", n)
		}
	}
	if _, _, err := decodeCheckpoint(append([]byte{9}, full[1:]...)); err == nil {
		t.Error("unknown version accepted")
	}
}

func FuzzDecodeCheckpoint(f *testing.F) {
	f.Add(encodeCheckpoint(map[string]map[int32]int64{"t": {1: 2}}, []byte("x")))
	f.Fuzz(func(t *testing.T, data []byte) {
		offsets, snap, err := decodeCheckpoint(data)
		if err != nil {
			return
		}
		again, snap2, err := decodeCheckpoint(encodeCheckpoint(offsets, snap))
		if err != nil || !cmp.Equal(again, offsets) || string(snap2) != string(snap) {
			t.Fatalf("re-encode mismatch: %v", err)
		}
	})
}

func TestSeenIDs(t *testing.T) {
	s := newSeenIDs(3)
	for _, id := range []string{"a", "b", "c"} {
		if !s.add(id) {
			t.Fatalf("%s seen before", id)
		}
	}
	if s.add("a") {
		t.Error("a accepted twice")
	}
	s.add("d") // evicts a
	if !s.add("a") {
		t.Error("a still remembered after eviction")
	}
}

func TestCheckpointChunks(t *testing.T) {
	big := make([]byte, 3*checkpointChunk+17)
	for i := range big {
		big[i] = byte(i * 7)
	}
	var cs checkpointChunks
	// Generation 1 complete, generation 2 complete, generation 3 cut short.
	for gen, data := range map[uint64][]byte{1: []byte("old"), 2: big} {
		for i, ch := range splitChunks(data, checkpointChunk) {
			cs.add(encodeChunk(gen, i, len(data), ch))
		}
	}
	cs.add(encodeChunk(3, 0, len(big), big[:checkpointChunk]))
	got, gen := cs.latest()
	if gen != 2 || string(got) != string(big) {
		t.Errorf("latest = generation %d, %d bytes; want generation 2, %d bytes", gen, len(got), len(big))
	}
	if n := len(splitChunks(big, checkpointChunk)); n != 4 {
		t.Errorf("chunks = %d, want 4", n)
	}
}
