# flowaudit — the two set-up commands are `make demo` and `make test`.
GO        ?= go
BIN       := bin/flowaudit
PKGS      := ./...
TEST_TIMEOUT ?= 60m
# The modern ClickHouse engine (libchdb.so) is compiled into the tests
# only when CHDB_LIB_PATH names it (chdb-go panics without the library).
TAGS      := $(if $(CHDB_LIB_PATH),-tags chdb)

.PHONY: all build build-chdb demo test test-short bench fuzz lint fmt clean lab

all: build

build:
	$(GO) build -o $(BIN) ./cmd/flowaudit

# The binary with the embedded modern ClickHouse engine, for
# `--from-archive` (run it with CHDB_LIB_PATH naming libchdb.so: it will
# not start without the library).
build-chdb:
	$(GO) build -tags chdb -o bin/flowaudit-chdb ./cmd/flowaudit

# Runs the whole pipeline on the embedded defaults: a local ClickHouse
# (installed and started if none answers on 127.0.0.1:9000), the embedded
# broker and the simulator, then prints what landed in ClickHouse.
demo:
	bash deploy/demo.sh

# Every test, including the end-to-end ones against real ClickHouse and
# softflowd (skipped when missing unless FLOWAUDIT_REQUIRE_CLICKHOUSE=1),
# under the race detector (RACE= to run without it). The end-to-end tests
# run the flowaudit binary as a child process, built without -race, so the
# detector's cost falls on the packages' own tests.
# The packages whose tests load libchdb (the modern engine) run without
# -race: the library crashes the race-instrumented test binary at exit
# (after PASS), seen in sink and deploy/grafana.
RACE      ?= -race
CHDB_PKGS := ./archive ./cmd/flowaudit ./deploy/grafana ./query ./sink
MODULE    := github.com/flowaudit/flowaudit
test:
	$(GO) vet $(TAGS) $(PKGS)
ifneq ($(TAGS),)
	$(GO) test $(TAGS) $(RACE) -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list $(PKGS) | grep -v -x -F $(foreach p,$(CHDB_PKGS),-e $(MODULE)/$(p:./%=%)))
	$(GO) test $(TAGS) -count=1 -timeout $(TEST_TIMEOUT) $(CHDB_PKGS)
else
	$(GO) test $(RACE) -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)
endif

test-short:
	$(GO) test -count=1 -short $(PKGS)

# Benchmarks print flows/s for decode (beside goflow2 on the same input),
# encode, and sink inserts; the audit layer over 30 days of 1M flows/day;
# then the end-to-end pipeline benchmark.
bench:
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=2s ./ingest/flow/decoder ./ingest/access/parser ./schemas ./sink ./archive
	$(GO) test -run='^$$' -bench=. -benchmem -benchtime=2s -cpu=1 ./enrich ./policy ./detect/engine
	$(GO) test -run='^$$' -bench=. -benchtime=1x -timeout=60m ./bench/audit
	$(GO) run ./bench/e2e

# The segmented lab (root only): namespaces web, app, db and outside behind
# an nftables router enforcing `flowaudit policy export --format nftables`,
# real nginx, sshd and softflowd; runs the probe acceptance tests in it.
lab:
	$(GO) test -count=1 -v -run 'TestLab' ./internal/testutil/netlab ./cmd/flowaudit

# Short fuzzing of every parser of outside input.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzDecodeNetFlow -fuzztime=30s ./ingest/flow/decoder
	$(GO) test -run='^$$' -fuzz=FuzzDecodeSFlow -fuzztime=30s ./ingest/flow/decoder
	$(GO) test -run='^$$' -fuzz=FuzzUnmarshalFlowBatch -fuzztime=30s ./schemas
	$(GO) test -run='^$$' -fuzz=FuzzUnmarshalAccessEvent -fuzztime=30s ./schemas
	for f in FuzzParseSSHD FuzzParseWeb FuzzParseK8sAudit FuzzParseGateway FuzzParseJSON FuzzParseSyslog \
	    FuzzParseOpenVPN FuzzParseRADIUS FuzzParseKerberos FuzzParseWindows FuzzParseDHCP \
	    FuzzParseOpenVPNStatus FuzzParseDHCPLeases FuzzParseK8sPods FuzzNextRecord; do \
	  $(GO) test -run='^$$' -fuzz="^$${f}\$$" -fuzztime=20s ./ingest/access/parser || exit 1; done
	$(GO) test -run='^$$' -fuzz=FuzzFrameReader -fuzztime=20s ./ingest/access
	$(GO) test -run='^$$' -fuzz=FuzzBodyDecode -fuzztime=20s ./ingest/access
	$(GO) test -run='^$$' -fuzz=FuzzParseStreamDocument -fuzztime=20s ./ingest/access
	$(GO) test -run='^$$' -fuzz=FuzzParsePolicy -fuzztime=20s ./policy
	$(GO) test -run='^$$' -fuzz=FuzzDecodeNetworkPolicies -fuzztime=20s ./policy/enforce
	$(GO) test -run='^$$' -fuzz=FuzzKeyedUnmarshal -fuzztime=20s ./detect/engine
	$(GO) test -run='^$$' -fuzz=FuzzParseParams -fuzztime=20s ./console
	$(GO) test -run='^$$' -fuzz=FuzzDecodeCheckpoint -fuzztime=20s ./detect
	$(GO) test -run='^$$' -fuzz=FuzzUnmarshalAlert -fuzztime=20s ./schemas
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=20s ./cmd/flowaudit/internal/config
	$(GO) test -run='^$$' -fuzz=FuzzEchoInside -fuzztime=10s ./probe
	$(GO) test -run='^$$' -fuzz=FuzzParseManifest -fuzztime=10s ./report

lint:
	test -z "$$(gofmt -l .)" || (gofmt -l .; exit 1)
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

fmt:
	gofmt -w .

clean:
	rm -rf bin var
