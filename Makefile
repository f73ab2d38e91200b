# TaskWatch. `make run` starts the daemon and a demo workload; `make test` builds and passes every test.
SWIFT ?= swift
PREFIX ?= /usr/local
DESTDIR ?=
PORT ?= 10101
SOCKET ?=
BINDIR = $(DESTDIR)$(PREFIX)/bin
SHAREDIR = $(DESTDIR)$(PREFIX)/share/taskwatch
SWIFT_FILES = Sources Tests Package.swift $(wildcard Examples) $(wildcard Benchmarks/Package.swift Benchmarks/Benchmarks Benchmarks/Sources)

.PHONY: all build debug run test test-swift test-traits test-ops test-prometheus lint format deps deps-build \
	deps-test bench install clean prometheusrule fuzz fuzz-short attack soak image

all: build

# Only what is missing is installed (apt-get as root or through sudo). Building and running need the C
# libraries and curl; the tests also need Prometheus, jq, openssl and Python's prometheus_client and PyYAML.
deps-build:
	@scripts/install-deps.sh build

# After the build set, so that under `make -j` two apt-get runs never race for the dpkg lock.
deps-test: deps-build
	@scripts/install-deps.sh test

deps: deps-test

build: deps-build
	$(SWIFT) build -c release

debug: deps-build
	$(SWIFT) build

# SOCKET empty: the daemon's default ingest socket for this user. Set both to run beside another
# checkout's `make run`: make run PORT=10102 SOCKET=/tmp/tw2.sock
run: build
	@scripts/run-demo.sh "$$($(SWIFT) build -c release --show-bin-path)" "$(PORT)" "$(SOCKET)"

lint:
	$(SWIFT) format lint --strict --recursive $(SWIFT_FILES)

format:
	$(SWIFT) format --in-place --recursive $(SWIFT_FILES)

test: deps-test lint test-swift test-traits test-ops test-prometheus
	@echo "make test: all suites passed"

# The end-to-end suites start the built binaries, so build every product before testing. Serial:
# suites that start daemons and suites that share the process-wide reporter must not overlap.
test-swift: deps-test
	$(SWIFT) build
	TASKWATCH_BIN_DIR="$$($(SWIFT) build --show-bin-path)" $(SWIFT) test --no-parallel

# Each build profile of the client compiles and passes its tests.
test-traits: deps-build
	$(SWIFT) build --traits Stress --scratch-path .build-stress
	$(SWIFT) test --no-parallel --traits Stress --scratch-path .build-stress \
		--filter 'TaskWatchTests|TaskWatchMetricsTests|TaskWatchClientEndToEndTests'
	$(SWIFT) build --traits Silent --scratch-path .build-silent
	$(SWIFT) test --no-parallel --traits Silent --scratch-path .build-silent --filter 'TaskWatchTests|TaskWatchMetricsTests'

test-ops: deps-test
	prometheus/test.sh
	python3 grafana/test_dashboard.py
	python3 deploy/kubernetes/test_manifests.py
	deploy/test-units.sh "$$($(SWIFT) build --show-bin-path)/taskwatchd"

test-prometheus: deps-test
	$(SWIFT) build
	scripts/test-prometheus-e2e.sh "$$($(SWIFT) build --show-bin-path)"

# The client's benchmarks first: the daemon harness's report folds bench/results/client.json into its table.
bench: deps
	scripts/bench-client.sh
	scripts/bench.sh

# libFuzzer targets (Fuzz/, its own package): each runs FUZZ_SECONDS; prints executions and crashes.
FUZZ_SECONDS ?= 60
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# The short round CI runs.
fuzz-short: deps
	FUZZ_SECONDS=20 scripts/fuzz.sh

# Limits under attack against the release daemon: series flood, 10 k connects, tiny frames, series churn,
# slow HTTP.
ATTACK_SECONDS ?= 20
attack: build
	python3 scripts/attack.py "$$($(SWIFT) build -c release --show-bin-path)" --seconds $(ATTACK_SECONDS)

# 200 clients reporting every 10 ms, scraped every second; RSS, fds and threads must stay flat.
SOAK_SECONDS ?= 60
SOAK_CLIENTS ?= 200
soak: build
	python3 scripts/soak.py "$$($(SWIFT) build -c release --show-bin-path)" --seconds $(SOAK_SECONDS) \
		--clients $(SOAK_CLIENTS)

# The image deploy/kubernetes runs, tagged with the daemon's version, built by whichever of docker and
# podman is installed. deploy/kubernetes/test_manifests.py checks that the manifests name this tag.
VERSION := $(shell sed -n 's/.*static let version = "\(.*\)"/\1/p' Sources/TaskWatchDaemon/Version.swift)
IMAGE ?= ghcr.io/taskwatch/taskwatch:$(VERSION)
CONTAINER_TOOL ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
image:
	@if [ -z "$(CONTAINER_TOOL)" ]; then echo "make image: neither docker nor podman is installed" >&2; exit 1; fi
	$(CONTAINER_TOOL) build -f deploy/container/Dockerfile -t $(IMAGE) \
		--build-arg REVISION="$$(git rev-parse --short HEAD 2>/dev/null || echo dev)" .

prometheusrule: deps-test
	python3 deploy/kubernetes/generate-prometheusrule.py -o deploy/kubernetes/prometheusrule.yaml

# Copies only: build first as yourself (`make build`), then `sudo make install`, which needs no Swift
# toolchain on root's PATH and leaves no root-owned files in .build. (.build/release is SwiftPM's link to
# the release products.)
RELEASE_BIN = .build/release
install:
	@test -x $(RELEASE_BIN)/taskwatchd -a -x $(RELEASE_BIN)/taskwatch || \
		{ echo "make install: no release build in $(RELEASE_BIN); run 'make build' first" >&2; exit 1; }
	install -d $(BINDIR) $(SHAREDIR)/prometheus $(SHAREDIR)/grafana $(DESTDIR)/lib/systemd/system \
		$(DESTDIR)/usr/lib/sysusers.d
	install -m 0755 $(RELEASE_BIN)/taskwatchd $(BINDIR)/taskwatchd
	install -m 0755 $(RELEASE_BIN)/taskwatch $(BINDIR)/taskwatch
	sed 's|/usr/local/bin|$(PREFIX)/bin|g' deploy/systemd/taskwatchd.service > $(DESTDIR)/lib/systemd/system/taskwatchd.service
	install -m 0644 deploy/systemd/taskwatchd.socket deploy/systemd/taskwatchd-http.socket \
		$(DESTDIR)/lib/systemd/system/
	install -m 0644 deploy/systemd/taskwatch.sysusers.conf $(DESTDIR)/usr/lib/sysusers.d/taskwatch.conf
	install -m 0644 prometheus/rules.yml prometheus/alerts.yml $(SHAREDIR)/prometheus/
	install -m 0644 grafana/taskwatch.json $(SHAREDIR)/grafana/

clean:
	rm -rf .build .build-*
