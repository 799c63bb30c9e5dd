package archive

import (
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/apache/arrow-go/v18/parquet/schema"
)

// writerProperties: zstd pages without dictionaries (arrow-go's
// dictionary encoder hashes and allocates per value, which cost the
// archive 45 % of its CPU; zstd finds the repeats of plain pages),
// min/max statistics on the time columns only, which readers use to skip
// row groups outside a window, and pages of pageSize: the column writer
// allocates its page buffers once per column and row group, so smaller
// pages mean less memory to clear and collect for the same rows.
var writerProperties = func() *parquet.WriterProperties {
	props := []parquet.WriterProperty{
		parquet.WithCompression(compress.Codecs.Zstd),
		parquet.WithCompressionLevel(zstdLevel),
		parquet.WithDictionaryDefault(false),
		parquet.WithStats(false),
		parquet.WithDataPageSize(pageSize),
	}
	for _, col := range []string{"time_received", "time_start", "time_end", "time", "received"} {
		props = append(props, parquet.WithStatsFor(col, true))
	}
	return parquet.NewWriterProperties(props...)
}()

const (
	pageSize  = 64 << 10
	zstdLevel = 1 // klauspost's fastest encoder
)

// parquetSchema is the Parquet schema pqarrow gives the Arrow schema:
// what an Arrow reader (arrow-go, ClickHouse, DuckDB) reads back as it.
func parquetSchema(sc *arrow.Schema) *schema.Schema {
	ps, err := pqarrow.ToParquet(sc, writerProperties, pqarrow.DefaultWriterProps())
	if err != nil {
		panic(fmt.Sprintf("archive: Parquet schema of %v: %v", sc, err))
	}
	return ps
}

var (
	flowParquet   = parquetSchema(flowSchema)
	accessParquet = parquetSchema(accessSchema)
)

// newParquetWriter starts a Parquet file of schema ps on w.
func newParquetWriter(w io.Writer, ps *schema.Schema) (*file.Writer, error) {
	return file.NewParquetWriterWithError(w, ps.Root(), file.WithWriterProps(writerProperties))
}

// viewBatch is how many values' views writeGroup hands the column
// writer at a time.
const viewBatch = 4096

// views is writeGroup's reusable space for the views of one batch of
// byte-array values.
type views struct {
	bytes []parquet.ByteArray
	fixed []parquet.FixedLenByteArray
}

// writeGroup writes cols (one row group's columns, in schema order) as a
// row group of fw.
func writeGroup(fw *file.Writer, cols []colBuf, v *views) error {
	rg, err := fw.AppendRowGroupChecked()
	if err != nil {
		return err
	}
	for i := range cols {
		cw, err := rg.NextColumn()
		if err != nil {
			return err
		}
		b := &cols[i]
		switch w := cw.(type) {
		case *file.Int32ColumnChunkWriter:
			_, err = w.WriteBatch(b.i32, nil, nil)
		case *file.Int64ColumnChunkWriter:
			_, err = w.WriteBatch(b.i64, nil, nil)
		case *file.ByteArrayColumnChunkWriter:
			start := uint32(0)
			for from := 0; from < len(b.ends) && err == nil; from += viewBatch {
				v.bytes = v.bytes[:0]
				for _, end := range b.ends[from:min(from+viewBatch, len(b.ends))] {
					v.bytes = append(v.bytes, b.data[start:end:end])
					start = end
				}
				_, err = w.WriteBatch(v.bytes, nil, nil)
			}
		case *file.FixedLenByteArrayColumnChunkWriter:
			width := w.Descr().TypeLength()
			for from := 0; from < len(b.data) && err == nil; from += viewBatch * width {
				v.fixed = v.fixed[:0]
				for off := from; off+width <= min(from+viewBatch*width, len(b.data)); off += width {
					v.fixed = append(v.fixed, b.data[off:off+width:off+width])
				}
				_, err = w.WriteBatch(v.fixed, nil, nil)
			}
		default:
			err = fmt.Errorf("archive: column %s: unexpected writer %T", cw.Descr().Name(), cw)
		}
		if cerr := cw.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return rg.Close()
}
