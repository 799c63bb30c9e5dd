package console

import (
	"context"
	"encoding/csv"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestIdentitiesPage: /identities shows the review of `audit identities`
// over the fixture plus a gateway session no exporter saw: one row per
// identity × destination × service (as many as ClickHouse counts), the
// rules, the violation and the access-only row; /identities.csv is the
// same review sheet; ?identity= narrows it.
func TestIdentitiesPage(t *testing.T) {
	e := startEnv(t, Configuration{Listen: "127.0.0.1:0"})
	conn := e.ch.Conn(t)
	// carol through a database gateway from web to db: no flow, no rule.
	if err := conn.Exec(context.Background(), fmt.Sprintf(`INSERT INTO flowaudit.access_events (time, source, host, user, src_addr, dst_addr, dst_port, action, outcome)
SELECT toDateTime(%d), 'gateway', 'bastion', 'carol', IPv6StringToNum('::ffff:10.1.0.9'), IPv6StringToNum('::ffff:10.2.0.10'), toUInt16(5432), 'session_open', 'success'`,
		t0.Add(7*time.Minute).Unix())); err != nil {
		t.Fatal(err)
	}
	code, body := get(t, e.http.URL+"/identities?"+fixtureRange, "")
	if code != 200 {
		t.Fatalf("/identities: %d\n%s", code, body)
	}
	rowRE := regexp.MustCompile(`<tr data-identity="([^"]+)" data-verdict="([^"]+)"[^>]*><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>[^<]*</td><td>([^<]*)</td><td>(?:<a [^>]*>)?(\d+)(?:</a>)?</td><td>(\d+)</td>`)
	var rows []string
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		rows = append(rows, strings.Join(m[1:], "|"))
	}
	want := []string{
		"alice|allowed|web|app|8080/tcp|web-to-app|4|0",
		"bob|violation|web|db (sensitive)|5432/tcp|-|2|0",
		"carol|violation|web|db (sensitive)|5432/tcp|-|0|1",
		"svc-checkout|allowed|app|db (sensitive)|5432/tcp|app-to-db|4|0",
	}
	if d := cmp.Diff(rows, want); d != "" {
		t.Errorf("/identities destinations (-got +want):\n%s\n%s", d, body)
	}
	// As many rows as ClickHouse counts identity × destination × service
	// keys, independently of the review's code.
	keys := e.ch.QueryUint64(t, `SELECT toUInt64(count()) FROM
(
    SELECT DISTINCT if(service_side = 'src', dst_identity, src_identity) AS id, if(service_side = 'src', src_segment, dst_segment) AS seg,
        if(service_side = 'src', src_port, dst_port) AS port, proto
    FROM flowaudit.flows WHERE id != ''
    UNION ALL
    SELECT DISTINCT user AS id, 'db' AS seg, dst_port AS port, toUInt8(6) AS proto FROM flowaudit.access_events WHERE outcome = 'success'
)`)
	if uint64(len(rows)) != keys {
		t.Errorf("%d rows on the page, ClickHouse counts %d keys", len(rows), keys)
	}
	for _, s := range []string{`id="identity-profiles"`, `data-identity="svc-checkout"`, "4 identities", "0 of 6 cross-segment flows into db",
		`href="/identities.csv?`, `href="/flows?dst_segment=db&amp;from=`} {
		if !strings.Contains(body, s) {
			t.Errorf("/identities lacks %q:\n%s", s, body)
		}
	}

	code, text := get(t, e.http.URL+"/identities.csv?"+fixtureRange, "")
	recs, err := csv.NewReader(strings.NewReader(text)).ReadAll()
	if code != 200 || err != nil || len(recs) != 1+len(want) {
		t.Errorf("/identities.csv: %d, %v, %d records; want header + %d rows:\n%s", code, err, len(recs), len(want), text)
	}

	_, one := get(t, e.http.URL+"/identities?"+fixtureRange+"&identity=bob", "")
	if n := len(rowRE.FindAllString(one, -1)); n != 1 || !strings.Contains(one, `value="bob"`) {
		t.Errorf("/identities?identity=bob: %d rows, want 1", n)
	}
}
