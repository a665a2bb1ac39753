# The data sandbox: one Go module; everything here needs only Go and make.
GO      ?= go
BIN     := bin
PKGS    := ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0

.PHONY: all build test test-short demo bench bench-peers bench-deps soak lint fuzz clean chromium

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The whole suite, race detector on. CI runs exactly this (.ci/run).
test: chromium
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

# The console's browser tests (cmd/sandboxctl) drive Debian's chromium,
# installed here when missing if we are root; otherwise they are skipped
# and this says what to run.
chromium:
	@if [ -x /usr/bin/chromium ] || [ -n "$$CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
		echo "make: the console's browser tests need chromium: run 'sudo apt-get install -y chromium' (or set CHROMIUM=/path/to/chrome); they are skipped without it"; \
	fi

test-short:
	$(GO) test -count=1 $(PKGS)

# Starts a local 3-node consortium, acts as each user, verifies, stops.
demo: build
	$(BIN)/demo --bin $(BIN)

# Go benchmarks (several runs, medians) summarised as one table and
# bench/results.json, with the peers measured in the same run: etcd and
# PostgreSQL from Debian's packages (installed here when missing, as root),
# DuckDB in process (cmd/bench/peers, a module of its own, built with
# -tags duckdb: a cgo library that is never part of the product or of make
# test). "make bench-peers" runs only the figures compared with a peer.
bench: build bench-deps
	$(GO) run ./cmd/bench --count 5

bench-peers: build bench-deps
	$(GO) run ./cmd/bench --count 3 --peers-only --out bench/peers.json

# The peers' Debian packages: installed as root with apt when missing;
# otherwise it says what to run (the bench then prints them as skipped).
bench-deps:
	@missing=""; \
	command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "bench: installing$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
		else \
			echo "bench: missing$$missing; install with: sudo apt-get install$$missing (their baselines are skipped until then)"; \
		fi; \
	fi

# Longer fault and load runs than make test's (not part of CI): a minute of
# load, the kill, full-disk and partition tests repeated.
soak:
	LOAD_SECONDS=60 $(GO) test -race -count=1 -run '^TestLoad$$' -v ./api
	$(GO) test -count=10 -run '^TestPartitionedMinorityRefusesAndConverges$$' ./api
	$(GO) test -count=5 -timeout 30m -run '^(TestKillLeaderDuringWrites|TestFullDiskNodeStopsAndRecovers|TestRunHEJobSurvivesNodeKill)$$' -v ./cmd/sandboxd

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1)
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

# Each fuzz target for 20 seconds.
fuzz:
	@for t in FuzzParseEntry FuzzParseProposal FuzzParseCheckpoint FuzzParseRPC; do $(GO) test ./chain -run XXX -fuzz "^$$t$$" -fuzztime 20s || exit 1; done
	@for t in FuzzParseRange FuzzParseAppendRequest; do $(GO) test ./api -run XXX -fuzz "^$$t$$" -fuzztime 20s || exit 1; done
	@for t in FuzzParsePolicy FuzzParseSchema FuzzParseLimits; do $(GO) test ./policies -run XXX -fuzz "^$$t$$" -fuzztime 20s || exit 1; done
	@for t in FuzzParseQuery FuzzCheckQuery FuzzParseTree FuzzIngestCSV FuzzCSVReader FuzzParseNumber FuzzParseShipment FuzzGatherChunks; do $(GO) test ./sandbox -run XXX -fuzz "^$$t$$" -fuzztime 20s || exit 1; done
	@for t in FuzzUnmarshalCiphertext FuzzParsePublicKey; do $(GO) test ./sandbox/heparams -run XXX -fuzz "^$$t$$" -fuzztime 20s || exit 1; done
	$(GO) test ./audit -run XXX -fuzz '^FuzzVerifyRequest$$' -fuzztime 20s
	$(GO) test ./api/client -run XXX -fuzz '^FuzzReadExport$$' -fuzztime 20s
	$(GO) test ./sandbox -run XXX -fuzz '^FuzzCheckResult$$' -fuzztime 20s
	$(GO) test ./mpc -run XXX -fuzz '^FuzzOpenMessage$$' -fuzztime 20s
	$(GO) test ./mpc -run XXX -fuzz '^FuzzPseudonymMessages$$' -fuzztime 20s
	@for t in FuzzParseRequest FuzzParsePartial FuzzParseKeyShare; do $(GO) test ./mpc/pseudonym -run XXX -fuzz "^$$t$$" -fuzztime 20s || exit 1; done

clean:
	rm -rf $(BIN)
