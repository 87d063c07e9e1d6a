# enroot-cri: run `make help` for the targets.
GO        ?= go
BIN       := $(CURDIR)/bin
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/enroot-cri/enroot-cri/internal/version.Version=$(VERSION)
CRI_TOOLS := sigs.k8s.io/cri-tools
CRI_TOOLS_VERSION := v1.37.0
# Debian packages the daemon and the tests use.
APT_PACKAGES := squashfs-tools squashfuse busybox containernetworking-plugins iproute2 iptables procps gcc libc6-dev
TEST_FLAGS ?= -count=1 -timeout 30m

# Static: exec runs the binary inside containers, whatever libc they have. Only
# enroot-cri-nvml, which loads libnvidia-ml.so.1, is built with cgo.
export CGO_ENABLED := 0
export CGO_CFLAGS := -O2 -Wno-deprecated-declarations
export ENROOT_CRI_BIN := $(BIN)/enroot-cri
# enroot-cri-nvml with go-nvml's fake machines, for the GPU tests.
export ENROOT_CRI_NVML_FAKE := $(BIN)/enroot-cri-nvml-fake
export CRICTL := $(BIN)/crictl

.PHONY: help build crictl deps test test-security soak fuzz test-kubelet test-node-e2e test-cgroupv2 test-slurm-parity test-packages deb rpm docs lint demo bench-pull bench-start containerd-deps critest critest-bin bench clean

help: ## list the targets with their purpose
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

build: ## build bin/enroot-cri and bin/enroot-cri-shim (static) and bin/enroot-cri-nvml (cgo: it loads NVML)
	$(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' -o $(BIN)/enroot-cri ./cmd/enroot-cri
	$(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/enroot-cri-shim ./cmd/enroot-cri-shim
	CGO_ENABLED=1 $(GO) build -trimpath -buildmode=pie -ldflags '-s -w' -o $(BIN)/enroot-cri-nvml ./cmd/enroot-cri-nvml

crictl: ## build bin/crictl from cri-tools v1.37.0 through the Go module proxy
	@test -x $(BIN)/crictl || GOBIN=$(BIN) $(GO) install $(CRI_TOOLS)/cmd/crictl@$(CRI_TOOLS_VERSION)

deps: ## install the Debian packages the daemon and tests need (as root)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: deps build crictl ## run every test this machine can run (unit, root integration, crictl)
	$(GO) mod download
	CGO_ENABLED=1 $(GO) build -tags fakenvml -o $(ENROOT_CRI_NVML_FAKE) ./cmd/enroot-cri-nvml
	$(GO) test $(TEST_FLAGS) ./...
	CGO_ENABLED=1 $(GO) test $(TEST_FLAGS) ./mig/nvmlinv ./cmd/enroot-cri-nvml
	$(MAKE) --no-print-directory test-unprivileged

test-unprivileged: ## run the CRI handlers' tests (cri/server, on the fakes of cri/server/fake) as nobody: they need no root
	@d=$$(mktemp -d) && chmod 755 $$d && $(GO) test -c -o $$d/server.test ./cri/server && \
	cd $$d && setpriv --reuid=65534 --regid=65534 --clear-groups ./server.test -test.count=1; \
	rc=$$?; rm -rf $$d; [ $$rc -eq 0 ] && echo "ok  cri/server as nobody"; exit $$rc

# Every parser of untrusted input has a Go fuzz target: package:target.
FUZZ_TARGETS := ./enroot:FuzzParseFstab ./enroot:FuzzParseEnviron ./enroot:FuzzParsePasswd \
	./enroot/image:FuzzParseReference ./enroot/image:FuzzMergeLayers ./cgroups:FuzzParseSlurmConf \
	./mig:FuzzParseCapMinors ./cri/server:FuzzValidateContainer ./cri/server:FuzzValidatePodSandbox \
	./enroot:FuzzParseURI ./enroot/image:FuzzEnrootConfig
FUZZ_EXECS ?= 20000x

test-security: deps build ## run the attack suite against the live daemon and a short fuzz run of every untrusted-input parser
	bash -o pipefail -c "ENROOT_CRI_BIN=$(ENROOT_CRI_BIN) $(GO) test -count=1 -v -timeout 20m -run 'TestAttacks' ./tests | grep -E '^\s*--- |^(ok|FAIL|PASS)|Error'"
	@$(MAKE) --no-print-directory fuzz

SOAK_PODS ?= 200
SOAK_KILL_EVERY ?= 10s
soak: deps build ## churn SOAK_PODS pods (200) with 4 workers while the daemon is kill -9ed every ~SOAK_KILL_EVERY (10s); then check states and leaks
	bash -o pipefail -c "ENROOT_CRI_SOAK=1 ENROOT_CRI_SOAK_PODS=$(SOAK_PODS) ENROOT_CRI_SOAK_KILL_EVERY=$(SOAK_KILL_EVERY) $(GO) test -count=1 -v -timeout 45m -run '^TestSoak$$' ./tests | grep -v -E '^=== (RUN|PAUSE|CONT)'"

fuzz: ## run every fuzz target for FUZZ_EXECS inputs (default 20000x; e.g. FUZZ_EXECS=60s)
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name"; $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZ_EXECS) $$pkg | tail -2; done

test-cgroupv2: ## run the cgroups tests in a qemu guest with a pure cgroup v2 hierarchy (Debian's kernel, cgroup_no_v1=all)
	@dpkg -s qemu-system-x86 >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; }
	GO=$(GO) ./tests/cgroupv2.sh

deb: build ## build dist/enroot-cri_<version>_amd64.deb (nfpm, from Go)
	$(GO) run ./packaging/mkpkg -formats deb

rpm: build ## build dist/enroot-cri-<version>.x86_64.rpm (nfpm, from Go)
	$(GO) run ./packaging/mkpkg -formats rpm

PACKAGE_TOOLS := lintian rpm debootstrap

test-packages: deb rpm ## lintian the .deb, rpm -qpi/-qpl the .rpm, install the .deb in a debootstrap chroot
	@missing=""; for p in $(PACKAGE_TOOLS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	GO=$(GO) ./tests/packages.sh

SLURM_PACKAGES := slurmd slurmctld slurm-client munge libslurm-dev
# Enroot and pyxis are built from ../shared/thirdparty (or ENROOT_SRC, PYXIS_SRC) with these.
ENROOT_BUILD_PACKAGES := build-essential libbsd-dev makeself curl gawk jq parallel pigz pv zstd libcap2-bin passwd

test-slurm-parity: deps build ## slurmd on 127.0.0.1: cgroups of steps and pods under the same cgroup.conf; pyxis+Enroot steps vs pods (docs/parity.md)
	@missing=""; for p in $(SLURM_PACKAGES) $(ENROOT_BUILD_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	CGO_ENABLED=1 $(GO) build -tags fakenvml -o $(ENROOT_CRI_NVML_FAKE) ./cmd/enroot-cri-nvml
	bash -o pipefail -c "ENROOT_CRI_SLURM_PARITY=1 $(GO) test -count=1 -v -run 'TestSlurmParity|TestSlurmPrologEpilog|TestEnrootParity|TestStockEnrootConfiguration|TestPyxisImporter' ./tests | grep -v -E '^=== (RUN|PAUSE|CONT)'"

test-node-e2e: deps build crictl ## the Kubernetes node e2e suite (NodeConformance; no Serial, Slow, Flaky, Disruptive, Feature) against the daemon's defaults, offline; result in docs/node-e2e.md
	GO=$(GO) ./tests/node-e2e.sh

test-kubelet: deps build crictl ## a real node: etcd, kube-apiserver, kubelet and kubectl (built from the module proxy) on 127.0.0.1 against the daemon's defaults
	GO=$(GO) ./tests/kube-build.sh
	bash -o pipefail -c "ENROOT_CRI_KUBE_BIN=$(CURDIR)/_output/kube/bin $(GO) test -count=1 -v -timeout 20m -run 'TestKubelet' ./tests | grep -v -E '^=== (RUN|PAUSE|CONT)'"

GOLANGCI_LINT_VERSION := v2.15.0

lint: ## gofmt, go vet and golangci-lint (errcheck, staticcheck, errorlint, revive, gosec, depguard)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	CGO_ENABLED=1 $(GO) vet ./...
	@test -x $(BIN)/golangci-lint || GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	CGO_ENABLED=1 $(BIN)/golangci-lint run ./...

demo: deps build crictl ## start the daemon on a scratch configuration, pull a locally built image, run a pod, print its log
	./tests/demo.sh

bench-pull: deps build ## pull a generated ~1 GiB image from 127.0.0.1 (rates vs enroot import's steps); srun --container-image of it through our importer vs pyxis's own import
	$(GO) run ./tests/cmd/bench-pull
	@missing=""; for p in $(SLURM_PACKAGES) $(ENROOT_BUILD_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	bash -o pipefail -c "ENROOT_CRI_BENCH_SRUN=1 $(GO) test -count=1 -v -timeout 30m -run 'TestBenchSrunContainerImage' ./tests | grep -v -E '^=== (RUN|PAUSE|CONT)'"

bench-start: deps build crictl ## create+start latency for a ~10 MiB and a ~2 GiB image; monitors' RSS/PSS at 100 pods and the CPU of a log flood, beside containerd's
	$(GO) run ./tests/cmd/bench-start -bin $(BIN)/enroot-cri
	@$(MAKE) --no-print-directory containerd-deps
	BENCH_PARTS="memory flood" ./tests/bench.sh

containerd-deps:
	@for p in containerd runc; do dpkg -s $$p >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc >/dev/null; break; }; done

critest-bin: ## build bin/critest from cri-tools v1.37.0 through the Go module proxy
	@test -x $(BIN)/critest || { $(GO) mod download $(CRI_TOOLS)@$(CRI_TOOLS_VERSION) && \
		cd "$$($(GO) env GOMODCACHE)/$(CRI_TOOLS)@$(CRI_TOOLS_VERSION)" && $(GO) test -c -o $(BIN)/critest ./cmd/critest; }

critest: deps build crictl critest-bin ## run critest (cri-tools v1.37.0) against enroot-cri with locally built images
	./tests/critest.sh

bench: deps build crictl critest-bin containerd-deps ## critest -benchmark, crictl timings and read calls at 200 containers, enroot-cri and containerd (Debian) side by side (BENCH_PARTS="critest sizes reads")
	./tests/bench.sh

docs: ## regenerate docs/config-reference.md from the built-in configuration
	UPDATE_DOCS=1 $(GO) test -count=1 -run TestReferenceIsGenerated ./config

clean: ## remove build outputs
	rm -rf $(BIN) _output dist
