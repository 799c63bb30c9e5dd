package kafka

import (
	"encoding/binary"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"
)

// SourceHeader is the record header a stage that transforms records
// (enrich) puts on what it produces: which input record it came from, and
// which chunk of it this is. The sink uses it to insert every input record
// exactly once however often the stage produced it (a stage that crashes
// between producing and committing produces again).
const SourceHeader = "flowaudit-source"

// Source identifies the input record an output record was made from.
type Source struct {
	Partition int32
	Offset    int64
	// Chunk is this record's index among the Chunks records made from
	// the input record for one output partition.
	Chunk, Chunks uint16
}

// Header returns the source as a record header.
func (s Source) Header() kgo.RecordHeader {
	v := make([]byte, 16)
	binary.BigEndian.PutUint32(v[0:], uint32(s.Partition))
	binary.BigEndian.PutUint64(v[4:], uint64(s.Offset))
	binary.BigEndian.PutUint16(v[12:], s.Chunk)
	binary.BigEndian.PutUint16(v[14:], s.Chunks)
	return kgo.RecordHeader{Key: SourceHeader, Value: v}
}

// RecordSource returns the source header of rec; ok is false when rec has
// none. A malformed header is an error.
func RecordSource(rec *kgo.Record) (s Source, ok bool, err error) {
	for _, h := range rec.Headers {
		if h.Key != SourceHeader {
			continue
		}
		if len(h.Value) != 16 {
			return Source{}, false, errors.New("malformed " + SourceHeader + " header")
		}
		s = Source{
			Partition: int32(binary.BigEndian.Uint32(h.Value[0:])),
			Offset:    int64(binary.BigEndian.Uint64(h.Value[4:])),
			Chunk:     binary.BigEndian.Uint16(h.Value[12:]),
			Chunks:    binary.BigEndian.Uint16(h.Value[14:]),
		}
		if s.Chunks == 0 || s.Chunk >= s.Chunks || s.Offset < 0 || s.Partition < 0 {
			return Source{}, false, errors.New("malformed " + SourceHeader + " header")
		}
		return s, true, nil
	}
	return Source{}, false, nil
}
