#!/usr/bin/env bash
# make demo: run flowaudit end to end on the embedded defaults: a local
# ClickHouse, the embedded Kafka-protocol broker and simulated exporters in
# all four protocols, then print what landed in ClickHouse.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_SEND=${DEMO_SECONDS:-8}
RATE=${DEMO_RATE:-5000}

step() { printf '\n==> %s\n' "$*"; }

step "ClickHouse"
bash deploy/clickhouse-local.sh

step "Building flowaudit"
go build -o bin/flowaudit ./cmd/flowaudit
echo "bin/flowaudit $(bin/flowaudit version)"

CH="clickhouse-client --host 127.0.0.1 --port 9000"
if ! command -v clickhouse-client >/dev/null; then
  CH="curl -sS --data-binary @- http://127.0.0.1:8123/"
fi
q() { if [[ "$CH" == curl* ]]; then echo "$1 FORMAT PrettyCompact" | $CH; else $CH --format PrettyCompact -q "$1"; fi; }
qv() { if [[ "$CH" == curl* ]]; then echo "$1" | $CH; else $CH -q "$1"; fi; }

step "Resetting the demo's state (var/demo, ClickHouse database flowaudit_demo)"
rm -rf var/demo
qv "DROP DATABASE IF EXISTS flowaudit_demo" >/dev/null

step "Starting flowaudit run (embedded broker, collectors, enrich, detect, sink); logs in var/demo.log"
mkdir -p var
bin/flowaudit run --config deploy/demo.yaml >var/demo.log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for i in $(seq 1 120); do
  if curl -fsS http://127.0.0.1:9464/readyz >/dev/null 2>&1; then break; fi
  if ! kill -0 $PID 2>/dev/null; then echo "flowaudit exited:"; tail -30 var/demo.log; exit 1; fi
  sleep 0.5
done
curl -fsS http://127.0.0.1:9464/readyz >/dev/null || { echo "flowaudit not ready:"; tail -30 var/demo.log; exit 1; }
echo "ready: metrics on http://127.0.0.1:9464/metrics"
START=$(qv "SELECT toUInt32(now())")
sleep 1

step "Simulating for ${SECONDS_TO_SEND}s: NetFlow v5, v9, IPFIX on :2055 and sFlow on :6343 at ${RATE} flows/s each; sshd and nginx syslog on :5514, Kubernetes audit and gateway logs over HTTP on :8080"
: > var/demo-sent.txt
SIMS=()
bin/flowaudit simulate --quiet --protocol v5    --target 127.0.0.1:2055 --rate "$RATE" --duration "${SECONDS_TO_SEND}s" --seed 1 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate --quiet --protocol v9    --target 127.0.0.1:2055 --rate "$RATE" --duration "${SECONDS_TO_SEND}s" --seed 2 --observation-id 9 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate --quiet --protocol ipfix --target 127.0.0.1:2055 --rate "$RATE" --duration "${SECONDS_TO_SEND}s" --seed 3 --observation-id 10 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate --quiet --protocol sflow --target 127.0.0.1:6343 --rate "$RATE" --duration "${SECONDS_TO_SEND}s" --seed 4 --sampling-rate 1024 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate access --quiet --format sshd      --target udp://127.0.0.1:5514 --rate 50 --duration "${SECONDS_TO_SEND}s" --seed 5 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate access --quiet --format nginx     --target tcp://127.0.0.1:5514 --rate 50 --duration "${SECONDS_TO_SEND}s" --seed 6 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate access --quiet --format k8s_audit --target http://127.0.0.1:8080 --rate 50 --duration "${SECONDS_TO_SEND}s" --seed 7 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate access --quiet --format gateway   --target http://127.0.0.1:8080 --rate 50 --duration "${SECONDS_TO_SEND}s" --seed 8 >>var/demo-sent.txt &
SIMS+=($!)
# Identity sources: VPN, RADIUS, Kerberos, Windows logons and DHCP leases
# binding the flow simulator's web hosts (README "Identity sources").
bin/flowaudit simulate access --quiet --format openvpn  --target udp://127.0.0.1:5514 --rate 20 --duration "${SECONDS_TO_SEND}s" --seed 9 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate access --quiet --format radius   --target tcp://127.0.0.1:5514 --rate 20 --duration "${SECONDS_TO_SEND}s" --seed 10 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate access --quiet --format kerberos --target udp://127.0.0.1:5514 --rate 20 --duration "${SECONDS_TO_SEND}s" --seed 11 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate access --quiet --format windows  --target http://127.0.0.1:8080 --rate 20 --duration "${SECONDS_TO_SEND}s" --seed 12 >>var/demo-sent.txt &
SIMS+=($!)
bin/flowaudit simulate access --quiet --format dhcp     --target udp://127.0.0.1:5514 --rate 20 --duration "${SECONDS_TO_SEND}s" --seed 13 >>var/demo-sent.txt &
SIMS+=($!)
wait "${SIMS[@]}"
cat var/demo-sent.txt
SENT=$(sed -n 's/.* flows=\([0-9]*\).*/\1/p' var/demo-sent.txt | awk '{s+=$1} END {print s+0}')
LINES=$(sed -n 's/.* lines=\([0-9]*\).*/\1/p' var/demo-sent.txt | awk '{s+=$1} END {print s+0}')
echo "total sent: $SENT flows, $LINES access-log lines"

step "Waiting for every flow and access event to reach ClickHouse"
GOT=0; GOTA=0
for i in $(seq 1 120); do
  GOT=$(qv "SELECT count() FROM flowaudit_demo.flows WHERE time_received >= $START")
  GOTA=$(qv "SELECT count() FROM flowaudit_demo.access_events WHERE received >= $START")
  printf '\r  flows %s / %s   access events %s / %s' "$GOT" "$SENT" "$GOTA" "$LINES"
  [ "$GOT" -ge "$SENT" ] && [ "$GOTA" -ge "$LINES" ] && break
  sleep 0.5
done
echo

step "Summary read back from ClickHouse (flowaudit_demo.flows)"
q "SELECT flow_type, count() AS flows, sum(bytes) AS bytes, sum(packets) AS packets, any(sampling_rate) AS sampling_rate, uniqExact(exporter) AS exporters FROM flowaudit_demo.flows WHERE time_received >= $START GROUP BY flow_type ORDER BY flow_type"
q "SELECT IPv6NumToString(src_addr) AS src, IPv6NumToString(dst_addr) AS dst, dst_port, proto, sum(bytes) AS bytes FROM flowaudit_demo.flows WHERE time_received >= $START GROUP BY src, dst, dst_port, proto ORDER BY bytes DESC LIMIT 5"
q "SELECT dst_port, proto, count() AS flows, sum(bytes) AS bytes FROM flowaudit_demo.flows WHERE time_received >= $START GROUP BY dst_port, proto ORDER BY flows DESC LIMIT 8"

step "Segment matrix with policy verdicts (flowaudit_demo.segment_matrix_1m, policy deploy/scenario-policy.yaml)"
q "SELECT src_segment, dst_segment, verdict, sum(flows) AS flows, sum(bytes) AS bytes FROM flowaudit_demo.segment_matrix_1m WHERE minute >= toStartOfMinute(toDateTime($START)) GROUP BY src_segment, dst_segment, verdict ORDER BY src_segment, dst_segment, verdict"
q "SELECT src_segment, dst_segment, dst_port, proto, count() AS violations, uniqExact(src_addr) AS sources FROM flowaudit_demo.flows WHERE time_received >= $START AND verdict = 'violation' GROUP BY src_segment, dst_segment, dst_port, proto ORDER BY violations DESC LIMIT 8"

step "Flows attributed by identity source (flowaudit_demo.flows.src_identity_source)"
q "SELECT src_identity_source, count() AS flows, uniqExact(src_identity) AS identities, uniqExact(src_device) AS devices, any(src_identity) AS example_identity, any(src_device) AS example_device FROM flowaudit_demo.flows WHERE time_received >= $START AND src_identity_source != '' GROUP BY src_identity_source ORDER BY flows DESC"

step "Access events read back from ClickHouse (flowaudit_demo.access_events)"
q "SELECT source, countIf(outcome = 'success') AS success, countIf(outcome = 'failure') AS failure, countIf(outcome = 'denied') AS denied, uniqExact(user) AS users FROM flowaudit_demo.access_events WHERE received >= $START GROUP BY source ORDER BY source"
q "SELECT user, IPv6NumToString(src_addr) AS src, count() AS failed_logins FROM flowaudit_demo.access_events WHERE received >= $START AND action = 'login' AND outcome = 'failure' GROUP BY user, src ORDER BY failed_logins DESC LIMIT 5"

step "Restarting flowaudit with the detectors on (deploy/demo-detect.yaml)"
kill -TERM $PID; wait $PID || true
bin/flowaudit run --config deploy/demo-detect.yaml >>var/demo.log 2>&1 &
PID=$!
for i in $(seq 1 120); do
  if curl -fsS http://127.0.0.1:9464/readyz >/dev/null 2>&1; then break; fi
  if ! kill -0 $PID 2>/dev/null; then echo "flowaudit exited:"; tail -30 var/demo.log; exit 1; fi
  sleep 0.5
done

step "Replaying the labelled attack scenario: 20 minutes of event time in 20 s"
bin/flowaudit simulate scenario --flows 127.0.0.1:2055 --syslog 127.0.0.1:5514 --seed 7 2>/dev/null | tee var/demo-scenario.txt
EXPECTED=$(sed -n 's/.*expected_alerts=\([0-9]*\).*/\1/p' var/demo-scenario.txt | awk '{s+=$1} END {print s+0}')
ALERTS=0
for i in $(seq 1 90); do
  ALERTS=$(qv "SELECT count() FROM flowaudit_demo.alerts FINAL WHERE time >= $START")
  printf '\r  alerts in ClickHouse: %s (scenario injects %s)' "$ALERTS" "$EXPECTED"
  [ "$ALERTS" -ge "$EXPECTED" ] && break
  sleep 1
done
echo

step "Alerts raised (flowaudit_demo.alerts)"
q "SELECT kind, severity, summary FROM flowaudit_demo.alerts FINAL WHERE time >= $START ORDER BY time"

# The scenario's event times run ahead of the wall clock (it starts now and
# replays 20 minutes in 20 s): the audit window ends after them.
UNTIL=$(date -u -d '+30 min' +%Y-%m-%dT%H:%M:%SZ)
step "Audit: least-privilege rules recommended from the demo's own traffic (flowaudit audit recommend)"
bin/flowaudit audit recommend --config deploy/demo-detect.yaml --since 2h --until "$UNTIL"
bin/flowaudit audit recommend --config deploy/demo-detect.yaml --since 2h --until "$UNTIL" --format policy >var/demo-recommended.yaml
echo "as a policy file: $(bin/flowaudit policy validate var/demo-recommended.yaml)"

step "Audit: what the stricter draft deploy/demo-draft-strict.yaml would have changed (flowaudit audit simulate)"
bin/flowaudit audit simulate deploy/demo-draft-strict.yaml --config deploy/demo-detect.yaml --since 2h --until "$UNTIL"

step "Audit: the same draft as a semantic policy diff (flowaudit audit diff)"
bin/flowaudit audit diff deploy/scenario-policy.yaml deploy/demo-draft-strict.yaml

step "Audit: the top findings of the policy against the demo's traffic (flowaudit audit gaps; --format json for all of them)"
bin/flowaudit audit gaps --config deploy/demo-detect.yaml --since 2h --until "$UNTIL" | sed -n '1,8p'

step "Audit: who reached what, per user and service account (flowaudit audit identities; the scenario's lateral-movement identity mallory, the unattributed share into db)"
bin/flowaudit audit identities --config deploy/demo-detect.yaml --since 2h --until "$UNTIL" >var/demo-identities.txt
head -1 var/demo-identities.txt
awk '/^Destinations/ { print "" } /^(IDENTITY|mallory) /' var/demo-identities.txt
grep -A3 '^Unattributed' var/demo-identities.txt || true
bin/flowaudit audit identities --config deploy/demo-detect.yaml --since 2h --until "$UNTIL" --format csv >var/demo-identities.csv
echo "access review sheet (one row per identity × destination × service, reviewer columns empty): var/demo-identities.csv, $(( $(wc -l <var/demo-identities.csv) - 1 )) rows"

step "Compliance evidence pack: PCI DSS 4.0 from the demo's traffic (flowaudit report)"
rm -rf var/demo-report
bin/flowaudit report --framework pci-dss-4 --config deploy/demo-detect.yaml --since 2h --until "$UNTIL" --out var/demo-report
bin/flowaudit report verify var/demo-report
(cd var/demo-report && sha256sum -c --quiet MANIFEST.sha256 && echo "sha256sum -c MANIFEST.sha256: every file intact")

step "Stopping flowaudit (clean stop flushes and commits)"
kill -TERM $PID; wait $PID || true
trap - EXIT
tail -3 var/demo.log

if [ "$GOT" -ge "$SENT" ] && [ "$SENT" -gt 0 ] && [ "$GOTA" -ge "$LINES" ] && [ "$LINES" -gt 0 ] && [ "$ALERTS" -ge "$EXPECTED" ]; then
  echo; echo "OK: $SENT flows sent, $GOT rows in flowaudit_demo.flows; $LINES access-log lines sent, $GOTA rows in flowaudit_demo.access_events; $ALERTS alerts for $EXPECTED injected attacks."
else
  echo; echo "MISMATCH: $SENT flows sent, $GOT rows; $LINES access-log lines sent, $GOTA rows (see var/demo.log)"; exit 1
fi

# The console over the demo's data, left running for you: `flowaudit
# console` on 127.0.0.1:8088 (DEMO_CONSOLE=0 skips it). The map's range is
# whole hours from the demo's start to after the scenario's event times.
step "Console (flowaudit console --config deploy/demo-detect.yaml)"
FROM=$(date -u -d "@$(( START / 3600 * 3600 ))" +%Y-%m-%dT%H:%M:%SZ)
TO=$(date -u -d "@$(( ($(date -u -d "$UNTIL" +%s) / 3600 + 1) * 3600 ))" +%Y-%m-%dT%H:%M:%SZ)
CONSOLE_URL="http://127.0.0.1:8088/map?from=$FROM&to=$TO"
if [ -f var/demo-console.pid ] && kill -0 "$(cat var/demo-console.pid)" 2>/dev/null; then
  kill -TERM "$(cat var/demo-console.pid)"   # the previous demo's console
  for i in $(seq 1 20); do kill -0 "$(cat var/demo-console.pid)" 2>/dev/null || break; sleep 0.25; done
fi
rm -f var/demo-console.pid
CONSOLE_CMD="bin/flowaudit console --config deploy/demo-detect.yaml"
if [ "${DEMO_CONSOLE:-1}" = "1" ]; then
  nohup setsid $CONSOLE_CMD >var/demo-console.log 2>&1 </dev/null &
  echo $! >var/demo-console.pid
  for i in $(seq 1 40); do
    curl -fsS -o /dev/null "$CONSOLE_URL" 2>/dev/null && break
    kill -0 "$(cat var/demo-console.pid)" 2>/dev/null || break
    sleep 0.25
  done
  if curl -fsS -o /dev/null "$CONSOLE_URL" 2>/dev/null; then
    EDGES=$(curl -fsS "http://127.0.0.1:8088/api/edges?from=$FROM&to=$TO" | grep -c '"client"' || true)
    echo "console running (pid $(cat var/demo-console.pid), log var/demo-console.log): $EDGES segment edges on the map"
    echo "stop it with:  kill \$(cat var/demo-console.pid)"
  else
    echo "the console did not start (see var/demo-console.log); start it yourself: $CONSOLE_CMD"
    rm -f var/demo-console.pid
  fi
else
  echo "start it with:  $CONSOLE_CMD"
fi

cat <<TXT

Try a query of your own:
  clickhouse-client -q "SELECT toStartOfMinute(time_received) AS minute, flow_type, sum(bytes) FROM flowaudit_demo.flows GROUP BY minute, flow_type ORDER BY minute"
  clickhouse-client -q "SELECT time, user, IPv6NumToString(src_addr), action, outcome FROM flowaudit_demo.access_events WHERE source = 'sshd' ORDER BY time DESC LIMIT 20"
  clickhouse-client -q "SELECT src_identity, dst_segment, dst_port, count() FROM flowaudit_demo.flows WHERE src_identity != '' GROUP BY src_identity, dst_segment, dst_port ORDER BY count() DESC LIMIT 20"
  clickhouse-client -q "SELECT kind, severity, src_identity, summary, evidence FROM flowaudit_demo.alerts FINAL ORDER BY time DESC LIMIT 20"
  bin/flowaudit audit recommend --config deploy/demo-detect.yaml --since 2h --until $UNTIL --format json
  bin/flowaudit audit simulate var/demo-recommended.yaml --config deploy/demo-detect.yaml --since 2h --until $UNTIL
  bin/flowaudit audit gaps --config deploy/demo-detect.yaml --since 2h --until $UNTIL --format json
  bin/flowaudit report --framework soc2 --config deploy/demo-detect.yaml --since 2h --until $UNTIL --out var/demo-report-soc2
Run it again:   make demo        Stop ClickHouse:  kill \$(cat var/clickhouse/pid)
TXT
echo
echo "Compliance evidence pack (PCI DSS 4.0): open it in a browser, or the PDF beside it:"
echo "  file://$PWD/var/demo-report/index.html"
echo "  $PWD/var/demo-report/report.pdf"
echo "Console, the segment map of the demo's data:"
echo "  $CONSOLE_URL"
