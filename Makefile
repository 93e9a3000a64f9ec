# Basalt build, lint and test entry points. `make test` is the one command
# that runs every check and every test; CI (.ci/run) runs exactly that.
#
# Pinned Go tools are installed into .tools/bin (see `make tools`) and are
# always invoked by path, so whatever happens to be on PATH is never used.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

GO ?= go

# Pinned tool versions. Bumping one reinstalls it on the next `make tools`;
# bumping a protoc plugin changes generated code, so run `make proto` and
# commit the result in the same change. staticcheck v0.8.2 (2026.2.2) is the
# newest release; its go.mod targets Go 1.26 (v0.7.0 targets Go 1.25).
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION        := v0.8.2

TOOLS_DIR := $(CURDIR)/.tools
TOOLS_BIN := $(TOOLS_DIR)/bin
BIN_DIR   := $(CURDIR)/bin

PROTOC_GEN_GO      := $(TOOLS_BIN)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLS_BIN)/protoc-gen-go-grpc
STATICCHECK        := $(TOOLS_BIN)/staticcheck

# protoc comes from Debian 12 (apt-get install protobuf-compiler). Its
# version is written into every generated file, so a different protoc makes
# `make proto` produce a diff; proto and proto-check refuse any other one.
PROTOC         ?= protoc
PROTOC_VERSION := libprotoc 3.21.12
PROTO_DIR      := proto
PROTO_FILES     = $(shell find $(PROTO_DIR) -name '*.proto' | LC_ALL=C sort)
# etcd raft's raft.proto, imported by the transport protocol, comes from the
# module cache at the version go.mod pins.
RAFT_PROTO_DIR  = $(shell $(GO) mod download go.etcd.io/raft/v3 && $(GO) list -m -f '{{.Dir}}' go.etcd.io/raft/v3)/raftpb

# Every hand-written and generated .go file, for gofmt.
GO_FILES = $(shell find . -name '*.go' -not -path './.git/*' -not -path './.tools/*' \
	-not -path './bin/*' -not -path '*/testdata/*' | LC_ALL=C sort)

# Flags for the main test run. Everything runs under the race detector.
GO_TEST_FLAGS ?= -race -count=1 -timeout 20m

# Hook for long multi-process tests that are too slow under -race. Nothing
# needs it yet; when something does, tag those tests `//go:build long`,
# uncomment these lines and add test-long to the prerequisites of `test`.
# GO_TEST_LONG_FLAGS ?= -count=1 -timeout 30m -tags long
# .PHONY: test-long
# test-long:
# 	$(GO) test $(GO_TEST_LONG_FLAGS) ./...

.PHONY: all
all: build

## build: compile every package and build ./cmd/... binaries into bin/.
.PHONY: build
build:
	$(GO) build ./...
	@mkdir -p $(BIN_DIR)
	@if [ -n "$$($(GO) list ./cmd/... 2>/dev/null)" ]; then \
		echo "$(GO) build -o $(BIN_DIR)/ ./cmd/..."; \
		$(GO) build -o $(BIN_DIR)/ ./cmd/...; \
	else \
		echo "no packages under ./cmd yet"; \
	fi

## tools: install the pinned Go tools into .tools/bin.
.PHONY: tools
tools: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) $(STATICCHECK)

# Each tool is reinstalled when it is missing or its pinned version changes:
# the version marker's name carries the version, so a bump creates a new,
# newer marker. go install leaves an up-to-date binary alone, hence the touch.
TOOL_PKG_protoc-gen-go      := google.golang.org/protobuf/cmd/protoc-gen-go
TOOL_PKG_protoc-gen-go-grpc := google.golang.org/grpc/cmd/protoc-gen-go-grpc
TOOL_PKG_staticcheck        := honnef.co/go/tools/cmd/staticcheck

$(PROTOC_GEN_GO): $(TOOLS_DIR)/versions/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	$(call go-install,protoc-gen-go,$(PROTOC_GEN_GO_VERSION))
$(PROTOC_GEN_GO_GRPC): $(TOOLS_DIR)/versions/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	$(call go-install,protoc-gen-go-grpc,$(PROTOC_GEN_GO_GRPC_VERSION))
$(STATICCHECK): $(TOOLS_DIR)/versions/staticcheck@$(STATICCHECK_VERSION)
	$(call go-install,staticcheck,$(STATICCHECK_VERSION))

# go-install installs tool $(1) at version $(2) into .tools/bin.
define go-install
GOBIN=$(TOOLS_BIN) $(GO) install $(TOOL_PKG_$(1))@$(2)
@touch $(TOOLS_BIN)/$(1)
endef

$(TOOLS_DIR)/versions/%:
	@mkdir -p $(TOOLS_DIR)/versions
	@rm -f $(TOOLS_DIR)/versions/$(firstword $(subst @, ,$*))@*
	@touch $@

## versions: print the versions of Go, protoc and the pinned tools.
.PHONY: versions
versions: tools
	@$(GO) version
	@$(PROTOC) --version || echo "protoc: not installed"
	@$(PROTOC_GEN_GO) --version
	@$(PROTOC_GEN_GO_GRPC) --version
	@$(STATICCHECK) -version

## proto: regenerate Go code from every .proto under proto/ into the tree.
.PHONY: proto
proto: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)
	$(call protoc-gen,.)

# protoc-gen checks protoc's version and writes the Go code generated from
# PROTO_FILES under directory $(1) (the repository root for `make proto`, a
# scratch directory for proto-check).
define protoc-gen
@test -n "$(PROTO_FILES)" || { echo "proto: no .proto files under $(PROTO_DIR)/" >&2; exit 1; }
@v="$$($(PROTOC) --version)"; if [ "$$v" != "$(PROTOC_VERSION)" ]; then \
	echo "proto: need '$(PROTOC_VERSION)' (Debian 12 protobuf-compiler), found '$$v'" >&2; exit 1; fi
$(PROTOC) -I $(PROTO_DIR) -I $(RAFT_PROTO_DIR) \
	--plugin=protoc-gen-go=$(PROTOC_GEN_GO) \
	--plugin=protoc-gen-go-grpc=$(PROTOC_GEN_GO_GRPC) \
	--go_out=$(1) --go_opt=module=basalt \
	--go-grpc_out=$(1) --go-grpc_opt=module=basalt \
	$(PROTO_FILES)
endef

PROTO_CHECK_DIR := $(TOOLS_DIR)/proto-check

## proto-check: fail if checked-in generated code is not what `make proto` makes.
# It also fails on a .pb.go whose .proto is gone, and leaves the tree alone.
.PHONY: proto-check
proto-check: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)
	@rm -rf $(PROTO_CHECK_DIR) && mkdir -p $(PROTO_CHECK_DIR)
	$(call protoc-gen,$(PROTO_CHECK_DIR))
	@out=$(PROTO_CHECK_DIR); status=0; \
	while IFS= read -r f; do \
		rel="$${f#$$out/}"; \
		if ! cmp -s "$$f" "$$rel"; then \
			echo "proto-check: $$rel is stale or missing; run 'make proto'" >&2; status=1; \
		fi; \
	done < <(find "$$out" -type f -name '*.go' | LC_ALL=C sort); \
	while IFS= read -r f; do \
		if [ ! -e "$$out/$${f#./}" ]; then \
			echo "proto-check: $${f#./} has no .proto under $(PROTO_DIR)/; delete it" >&2; status=1; \
		fi; \
	done < <(find . -name '*.pb.go' -not -path './.git/*' -not -path './.tools/*' \
		-not -path './bin/*' | LC_ALL=C sort); \
	rm -rf $$out; \
	if [ $$status -ne 0 ]; then exit 1; fi; \
	echo "proto-check: generated code is up to date"

## lint: gofmt, go vet, staticcheck, proto-check and the internal/lint rules.
.PHONY: lint
lint: fmt-check vet staticcheck proto-check lint-rules

.PHONY: fmt-check
fmt-check:
	@out="$$(gofmt -l $(GO_FILES) </dev/null)"; if [ -n "$$out" ]; then \
		echo "gofmt: these files need 'gofmt -w':" >&2; echo "$$out" >&2; exit 1; fi
	@echo "gofmt: ok"

.PHONY: vet
vet:
	$(GO) vet ./...

.PHONY: staticcheck
staticcheck: $(STATICCHECK)
	$(STATICCHECK) ./...

.PHONY: lint-rules
lint-rules:
	$(GO) test -count=1 ./internal/lint/

## system-deps: install the Debian packages the tests need if missing.
# As root on Debian it installs them with apt-get; otherwise it prints the
# command to run. .ci/run installs the same list (APT_PACKAGES there).
SYSTEM_DEPS := protoc:protobuf-compiler gcc:gcc nbdinfo:libnbd-bin qemu-io:qemu-utils fio:fio nbdkit:nbdkit \
	qemu-system-x86_64:qemu-system-x86 busybox:busybox-static cpio:cpio \
	/usr/lib/jvm/java-17-openjdk-amd64/bin/javac:openjdk-17-jdk-headless mvn:maven
.PHONY: system-deps
system-deps:
	@missing=""; for d in $(SYSTEM_DEPS); do 		command -v "$${d%%:*}" >/dev/null 2>&1 || missing="$$missing $${d#*:}"; done; 	if [ -n "$$missing" ]; then 		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then 			echo "installing:$$missing libc6-dev"; 			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing libc6-dev </dev/null; 		else echo "missing packages; run: sudo apt-get install$$missing libc6-dev" >&2; exit 1; fi; 	fi
	@$(MAKE) --no-print-directory vm-assets

## vm-assets: fetch the kernel the VM tests boot (internal/vmtest).
# The newest linux-image-6.1.*-cloud-amd64 from apt (apt-get download, no
# install), unpacked into VM_ASSETS: vmlinuz, lib/modules/RELEASE/ with the
# modules uncompressed, and "package" (name and version), written last. An
# existing download is kept; delete VM_ASSETS/package to fetch again.
VM_ASSETS ?= $(if $(BASALT_VM_ASSETS),$(BASALT_VM_ASSETS),$(HOME)/.cache/basalt-vm)
VM_KERNEL_PACKAGES := ^linux-image-6\.1\.[0-9]+-[0-9]+-cloud-amd64$$
.PHONY: vm-assets
vm-assets:
	@dir="$(VM_ASSETS)"; \
	if [ -s "$$dir/package" ] && [ -f "$$dir/vmlinuz" ]; then echo "vm-assets: $$(cat "$$dir/package") in $$dir"; exit 0; fi; \
	pkg=$$(apt-cache search --names-only '$(VM_KERNEL_PACKAGES)' | awk '{print $$1}' | sort -V | tail -n 1); \
	if [ -z "$$pkg" ]; then echo "vm-assets: no linux-image-6.1.*-cloud-amd64 package known to apt; run apt-get update" >&2; exit 1; fi; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; chmod 755 "$$tmp"; \
	(cd "$$tmp" && apt-get download -q "$$pkg" </dev/null); \
	deb=$$(ls "$$tmp"/*.deb); dpkg-deb -x "$$deb" "$$tmp/root"; \
	rel=$${pkg#linux-image-}; mods="$$tmp/root/lib/modules/$$rel"; \
	[ -d "$$mods" ] || mods="$$tmp/root/usr/lib/modules/$$rel"; \
	find "$$mods" -name '*.ko.xz' -exec xz -d {} +; \
	mkdir -p "$$dir"; rm -rf "$$dir/package" "$$dir/vmlinuz" "$$dir/lib"; mkdir -p "$$dir/lib/modules"; \
	cp "$$tmp/root/boot/vmlinuz-$$rel" "$$dir/vmlinuz"; mv "$$mods" "$$dir/lib/modules/$$rel"; \
	echo "$$pkg $$(dpkg-deb -f "$$deb" Version)" > "$$dir/package"; \
	echo "vm-assets: $$(cat "$$dir/package") unpacked into $$dir"

## spark-plugin: build the Spark shuffle plugin (rss/spark/target/basalt-rss-spark.jar), its tests and test jobs.
# Maven rebuilds only when a source, the pom or rss.proto changed. The
# Spark versions are this Makefile's, passed to the pom.
SPARK_VERSION  := 3.5.7
SPARK4_VERSION := 4.2.0
MVN            ?= mvn
SPARK_TARGET   := rss/spark/target
SPARK_JARS     := $(SPARK_TARGET)/basalt-rss-spark.jar $(SPARK_TARGET)/basalt-rss-spark-tests.jar
SPARK4_JARS    := $(SPARK_TARGET)/spark4/basalt-rss-spark.jar $(SPARK_TARGET)/spark4/basalt-rss-spark-tests.jar
SPARK_SOURCES   = rss/spark/pom.xml proto/basalt/rss/v1/rss.proto rss/client/testdata/batches.json \
	$(shell find rss/spark/src -type f | LC_ALL=C sort)
.PHONY: spark-plugin spark4-plugin
spark-plugin: $(SPARK_JARS)
$(SPARK_JARS) &: $(SPARK_SOURCES)
	$(MVN) -B -q -f rss/spark/pom.xml -Dspark.version=$(SPARK_VERSION) package
	@touch $(SPARK_JARS)
## spark4-plugin: the same for Spark 4 (Scala 2.13), in rss/spark/target/spark4/.
spark4-plugin: $(SPARK4_JARS)
$(SPARK4_JARS) &: $(SPARK_SOURCES)
	$(MVN) -B -q -f rss/spark/pom.xml -Pspark4 -Dspark.version=$(SPARK4_VERSION) package
	@touch $(SPARK4_JARS)

## spark: install the Spark 3.5 and 4 the tests run into .tools (PyPI's pyspark ships a whole Spark home).
.PHONY: spark spark-home spark4-home
spark: $(TOOLS_DIR)/spark-$(SPARK_VERSION)/installed $(TOOLS_DIR)/spark-$(SPARK4_VERSION)/installed
$(TOOLS_DIR)/spark-%/installed:
	@rm -rf $(TOOLS_DIR)/spark-$*
	python3 -m pip install -q --disable-pip-version-check --no-deps --target $(TOOLS_DIR)/spark-$* pyspark==$*
	@test -x $(TOOLS_DIR)/spark-$*/pyspark/bin/spark-submit
	@touch $@
# spark-home and spark4-home print the SPARK_HOME the tests use.
spark-home:
	@echo $(TOOLS_DIR)/spark-$(SPARK_VERSION)/pyspark
spark4-home:
	@echo $(TOOLS_DIR)/spark-$(SPARK4_VERSION)/pyspark

## test: every check and every test. This is the command CI runs.
.PHONY: test
test: system-deps lint spark spark-plugin spark4-plugin
	$(GO) test $(GO_TEST_FLAGS) ./...

## bench: the raft benchmark (3 hosts, loopback gRPC, Pebble on disk).
.PHONY: bench
bench:
	$(GO) test -run '^$$' -bench 'BenchmarkPropose|BenchmarkSyncedWriteBaseline' -benchtime 20000x -count 1 ./raft/

## clean: remove built binaries (keeps the installed tools).
.PHONY: clean
clean:
	rm -rf $(BIN_DIR)

.PHONY: help
help:
	@grep -E '^## [a-z0-9-]+:' $(MAKEFILE_LIST) | sed 's/^## /  /'
