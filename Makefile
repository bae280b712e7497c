# pingkiller — build, test and demo.  `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
CLANG ?= clang
BPFTOOL ?= bpftool
BUILD := build/bpf
ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_CFLAGS := -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_$(ARCH) -I$(BUILD) -Ikern

APT_PACKAGES := clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make \
	iproute2 iputils-ping tcpdump strace util-linux libcap2-bin
export PIP_ROOT_USER_ACTION := ignore

.PHONY: help setup build skeleton test lint demo fuzz examples bench clean

help:
	@echo "make setup     install system packages (apt-get) and pingkiller with test extras (pip)"
	@echo "make build     vmlinux.h -> CO-RE object -> skeleton -> cffi extension (in place)"
	@echo "make test      setup, then the whole test suite (root for the kernel tiers)"
	@echo "make demo      setup, then kill pings in a sandbox namespace"
	@echo "make examples  the BPF C of docs/examples/bpf -> build/examples/*.bpf.o"
	@echo "make fuzz      differential fuzzing of the data path against its oracle (100k frames)"
	@echo "make lint      ruff and mypy --strict"
	@echo "make bench     (root) peers + benchmarks side by side; rewrites docs/performance.md"

$(BUILD):
	mkdir -p $@

$(BUILD)/vmlinux.h: | $(BUILD)
	@test -r /sys/kernel/btf/vmlinux || { echo "error: /sys/kernel/btf/vmlinux missing: this kernel has no BTF (CONFIG_DEBUG_INFO_BTF=y is needed)" >&2; exit 1; }
	$(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BUILD)/%.bpf.o: kern/%.bpf.c kern/%.h $(BUILD)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/%.skel.h: $(BUILD)/%.bpf.o
	$(BPFTOOL) gen skeleton $< name $*_bpf > $@.tmp && mv $@.tmp $@

skeleton: $(BUILD)/pingkiller.skel.h

# docs/examples/bpf/*.bpf.c, with the same flags as the main object
EXAMPLES_BUILD := build/examples
EXAMPLE_OBJECTS := $(patsubst docs/examples/bpf/%.bpf.c,$(EXAMPLES_BUILD)/%.bpf.o,\
	$(wildcard docs/examples/bpf/*.bpf.c))

$(EXAMPLES_BUILD):
	mkdir -p $@

$(EXAMPLES_BUILD)/%.bpf.o: docs/examples/bpf/%.bpf.c $(BUILD)/vmlinux.h | $(EXAMPLES_BUILD)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

examples: $(EXAMPLE_OBJECTS)

.SECONDARY: $(BUILD)/pingkiller.bpf.o

setup:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	$(PYTHON) -m pip install -q -e '.[test]'

build: skeleton
	$(PYTHON) build.py

test: setup
	$(PYTHON) -m pytest -q tests

BENCH_APT := xdp-tools nftables python3-bpfcc hyperfine
BENCH_BUILD := build/bench

$(BENCH_BUILD)/%.bpf.o: bench/bpf/%.bpf.c $(BUILD)/vmlinux.h
	@mkdir -p $(BENCH_BUILD)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BENCH_BUILD)/%: bench/c/%.c
	@mkdir -p $(BENCH_BUILD)
	gcc -O2 -Wall -o $@ $< -lbpf

bench: setup build $(BENCH_BUILD)/null.bpf.o $(BENCH_BUILD)/blog.bpf.o $(BENCH_BUILD)/gen.bpf.o \
		$(BENCH_BUILD)/rbconsume $(BENCH_BUILD)/loadrules
	@for p in $(BENCH_APT); do \
		dpkg -s $$p >/dev/null 2>&1 && continue; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$p >/dev/null 2>&1 \
			|| echo "note: $$p could not be installed; its comparison is skipped"; \
	done
	@# bcc compiles at run time against kernel headers. A kernel without a headers package
	@# (e.g. a custom VM kernel) gets Debian's: the bcc program only uses the stable UAPI.
	@mods=/lib/modules/$$(uname -r); if [ ! -e $$mods/build ]; then \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-headers-amd64 >/dev/null 2>&1; \
		hdr=$$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1); \
		if [ -n "$$hdr" ]; then mkdir -p $$mods && ln -sfn $$hdr $$mods/build \
			&& ln -sfn $${hdr%-amd64}-common $$mods/source \
			&& echo "note: bcc uses $$hdr (no headers for $$(uname -r))"; \
		else echo "note: no kernel headers; the bcc comparison is skipped"; fi; \
	fi
	$(PYTHON) bench/run.py

lint:
	$(PYTHON) -m ruff check pingkiller tests build.py
	$(PYTHON) -m mypy --strict pingkiller

demo: setup
	$(PYTHON) -m pingkiller demo

fuzz: setup
	$(PYTHON) tests/fuzz.py --examples 100000

clean:
	rm -rf build pingkiller/_native*.so pingkiller/_native.c pingkiller/_native.o *.egg-info

# --- man pages ---
# docs/man/pingkiller*.1 from the CLI's own help (after `make setup`); commit them with the
# help-text change: tests/unit/test_manpages.py fails while they are stale.
.PHONY: man
man:
	$(PYTHON) -m pingkiller.manpages --output docs/man
