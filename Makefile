# Skein developer entry points. `make test` is the whole suite CI runs.
SHELL     := /bin/bash
GO        ?= go
BIN       ?= bin/skein
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck
export GOFLAGS := -buildvcs=false

.PHONY: all build test lint unit conformance fuzz e2e kube-tools bench bench-setup up fmt clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/skein

## test: everything CI checks: formatting, vet, staticcheck, unit, fuzz, Istio conformance and end-to-end tests.
test: lint unit fuzz conformance e2e

lint: $(STATICCHECK)
	@out=$$(gofmt -l cmd internal samples test 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

$(STATICCHECK):
	GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

unit:
	$(GO) test -count=1 -timeout 600s $$($(GO) list ./... | grep -v /test/e2e)

## conformance: Istio's config cases (../shared/istio-conformance) handled as Istio does, but for test/conformance/allowlist.txt.
conformance: build
	test/conformance/run.sh $(BIN)

## fuzz: the config decoder as the config API receives it and the proxy's
## HTTP/1 request path, 60 s each (CI step).
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzApplyBody$$' -fuzztime $(FUZZTIME) ./internal/configapi/
	$(GO) test -run '^$$' -fuzz '^FuzzHTTP1Request$$' -fuzztime $(FUZZTIME) ./internal/proxy/hcm/

## e2e: real processes on loopback (builds the skein binary itself).
e2e:
	$(GO) test -count=1 -timeout 2700s -v ./test/e2e/... 2>&1 | tee e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go' ; exit $${PIPESTATUS[0]}

## kube-tools: pre-build etcd, kube-apiserver, kube-controller-manager,
## kube-scheduler and kubectl for the Kubernetes-mode e2e tests (they build
## them themselves when missing; cold that takes ~15 min on 2 cores).
kube-tools:
	$(GO) run ./test/kubetest/kubetools

## bench: latency/CPU/RSS figures; never gates CI (docs/performance.md).
## BENCH_FLAGS shortens it, e.g. BENCH_FLAGS='-duration 5s -saturation 5s'.
BENCH_FLAGS   ?=
CPSCALE_FLAGS ?=
bench: build bench-setup
	-$(GO) run ./test/bench -skein $(BIN) $(BENCH_FLAGS)
	-$(GO) run ./test/bench cpscale -skein $(BIN) $(CPSCALE_FLAGS)

## bench-setup: the reference proxies (nginx, HAProxy) the bench compares against.
bench-setup:
	@if { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null && { command -v haproxy || [ -x /usr/sbin/haproxy ]; } >/dev/null; then :; else \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq nginx-light haproxy \
		|| echo "bench-setup: could not install nginx/haproxy; their rows will be skipped"; fi

## up: the local mesh with Bookinfo.
up:
	$(GO) run ./cmd/skein up -f samples/bookinfo

fmt:
	gofmt -w cmd internal samples test

clean:
	rm -rf bin e2e.log
