package sink

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/flowaudit/flowaudit/internal/clickhousedb"
	"github.com/flowaudit/flowaudit/internal/testutil"
)

// TestDropExpiredPartitions puts rows on three days and keeps 48 h: only
// the day wholly older than the cutoff goes.
func TestDropExpiredPartitions(t *testing.T) {
	ch := testutil.StartClickHouse(t)
	conn := ch.Conn(t)
	ctx := context.Background()
	v, err := Migrate(ctx, conn, "flowaudit", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	chcfg := clickhousedb.DefaultConfiguration()
	chcfg.Addr = ch.Addr
	w := &flowWriter{name: "flows"}
	w.modern = v.Modern()
	for _, day := range []time.Time{now.AddDate(0, 0, -4), now.AddDate(0, 0, -2), now} {
		b := testBatch(3, "192.0.2.1")
		b.TimeReceived = uint64(day.UnixNano())
		for i := range b.Flows {
			w.partition(0, 0).appendRow(flowRow{received: b.TimeReceived, exporter: b.Exporter, typ: b.Type, flow: b.Flows[i]})
		}
	}
	if err := w.insert(ctx, conn, chcfg.Database); err != nil {
		t.Fatal(err)
	}
	dropped, err := DropExpiredPartitions(ctx, conn, "flowaudit", 48*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(dropped, []string{"20261119"}); diff != "" {
		t.Errorf("dropped (-got +want):\n%s", diff)
	}
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows"); got != 6 {
		t.Errorf("rows left = %d, want 6", got)
	}
	if got := ch.QueryUint64(t, "SELECT toUInt64(count()) FROM flowaudit.flows WHERE toYYYYMMDD(time_received) = 20261119"); got != 0 {
		t.Errorf("rows of the dropped day = %d, want 0", got)
	}
	if dropped, err := DropExpiredPartitions(ctx, conn, "flowaudit", 0, now); err != nil || dropped != nil {
		t.Errorf("retention 0 = %v, %v; want nothing dropped", dropped, err)
	}
}
