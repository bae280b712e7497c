"""cffi build script for ``pingkiller._native``.

The extension wraps the subset of libbpf the binding uses, a few C shims
(libbpf's log to Python, a ring-buffer batch copy, link info), the ABI in
``kern/pingkiller.h``, and the bpftool-generated skeleton, so the compiled BPF
object travels inside the extension and nothing is read from disk at run time.

``make build`` runs it as a script; ``pip install .`` and ``make wheel`` load it
through setup.py (``cffi_modules``). Importing it only describes the extension; the
BPF object and its skeleton (``make skeleton``: kern/*.c -> object -> skeleton) are
built just before the C compile, by :func:`build_skeleton`, so an sdist or wheel's
metadata can be computed on a machine with no clang, bpftool or kernel at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent
BPF_BUILD_DIR = ROOT / "build" / "bpf"
ABI_HEADER = ROOT / "kern" / "pingkiller.h"
SKELETON = BPF_BUILD_DIR / "pingkiller.skel.h"

# tool or file -> the Debian package that provides it
REQUIREMENTS = {
    "make": "make",
    "clang": "clang",
    "bpftool": "bpftool",
    "/usr/include/bpf/libbpf.h": "libbpf-dev",
    "/usr/include/gelf.h": "libelf-dev",
}

LIBBPF_CDEF = """
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;

struct bpf_object;
struct bpf_program;
struct bpf_map;
struct ring_buffer;

enum bpf_map_type {
    BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_HASH,
    BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH,
    BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE, BPF_MAP_TYPE_RINGBUF, ...
};
enum bpf_prog_type { BPF_PROG_TYPE_XDP, ... };
enum bpf_link_type { BPF_LINK_TYPE_XDP, ... };
enum bpf_attach_type { BPF_XDP, ... };
enum bpf_stats_type { BPF_STATS_RUN_TIME, ... };
enum { XDP_ATTACHED_NONE, XDP_ATTACHED_DRV, XDP_ATTACHED_SKB, XDP_ATTACHED_HW,
       XDP_ATTACHED_MULTI, ... };
enum { XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT, ... };

#define XDP_FLAGS_UPDATE_IF_NOEXIST ...
#define XDP_FLAGS_SKB_MODE ...
#define XDP_FLAGS_DRV_MODE ...
#define XDP_FLAGS_HW_MODE ...
#define XDP_FLAGS_REPLACE ...
#define BPF_F_REPLACE ...
#define BPF_ANY ...
#define BPF_NOEXIST ...
#define BPF_EXIST ...
#define BPF_F_TEST_XDP_LIVE_FRAMES ...
#define BPF_F_RDONLY ...
#define BPF_OBJ_NAME_LEN ...

struct bpf_object_open_opts { size_t sz; const char *object_name; ...; };
struct bpf_object *bpf_object__open_mem(const void *obj_buf, size_t obj_buf_sz,
                                        const struct bpf_object_open_opts *opts);
struct bpf_object *bpf_object__open_file(const char *path,
                                         const struct bpf_object_open_opts *opts);
int bpf_object__load(struct bpf_object *obj);
void bpf_object__close(struct bpf_object *obj);
const char *bpf_object__name(const struct bpf_object *obj);
struct bpf_program *bpf_object__next_program(const struct bpf_object *obj,
                                             struct bpf_program *prog);
struct bpf_map *bpf_object__next_map(const struct bpf_object *obj, const struct bpf_map *map);

const char *bpf_program__name(const struct bpf_program *prog);
const char *bpf_program__section_name(const struct bpf_program *prog);
int bpf_program__fd(const struct bpf_program *prog);
enum bpf_prog_type bpf_program__type(const struct bpf_program *prog);
int bpf_program__set_log_buf(struct bpf_program *prog, char *log_buf, size_t log_size);

const char *bpf_map__name(const struct bpf_map *map);
int bpf_map__fd(const struct bpf_map *map);
enum bpf_map_type bpf_map__type(const struct bpf_map *map);
__u32 bpf_map__key_size(const struct bpf_map *map);
__u32 bpf_map__value_size(const struct bpf_map *map);
__u32 bpf_map__max_entries(const struct bpf_map *map);
int bpf_map__set_max_entries(struct bpf_map *map, __u32 max_entries);
int bpf_map__reuse_fd(struct bpf_map *map, int fd);

int libbpf_num_possible_cpus(void);
int libbpf_strerror(int err, char *buf, size_t size);
__u32 libbpf_major_version(void);
__u32 libbpf_minor_version(void);
const char *libbpf_bpf_map_type_str(enum bpf_map_type t);
const char *libbpf_bpf_prog_type_str(enum bpf_prog_type t);
const char *libbpf_bpf_link_type_str(enum bpf_link_type t);

int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);

struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; ...; };
int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
                         __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
                         const struct bpf_map_batch_opts *opts);
int bpf_map_delete_batch(int fd, const void *keys, __u32 *count,
                         const struct bpf_map_batch_opts *opts);

int bpf_obj_pin(int fd, const char *pathname);
int bpf_obj_get(const char *pathname);
struct bpf_obj_get_opts { size_t sz; __u32 file_flags; ...; };
int bpf_obj_get_opts(const char *pathname, const struct bpf_obj_get_opts *opts);
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
int bpf_prog_get_fd_by_id(__u32 id);
int bpf_map_get_fd_by_id(__u32 id);
struct bpf_map_create_opts;
int bpf_map_create(enum bpf_map_type map_type, const char *map_name, __u32 key_size,
                   __u32 value_size, __u32 max_entries,
                   const struct bpf_map_create_opts *opts);

struct bpf_map_info {
    __u32 type; __u32 id; __u32 key_size; __u32 value_size; __u32 max_entries;
    __u32 map_flags; char name[16]; ...;
};
struct bpf_prog_info {
    __u32 type; __u32 id; unsigned char tag[8]; char name[16];
    __u64 run_time_ns; __u64 run_cnt; ...;
};

struct bpf_link_create_opts { size_t sz; __u32 flags; ...; };
int bpf_link_create(int prog_fd, int target_fd, enum bpf_attach_type attach_type,
                    const struct bpf_link_create_opts *opts);
struct bpf_link_update_opts { size_t sz; __u32 flags; __u32 old_prog_fd; ...; };
int bpf_link_update(int link_fd, int new_prog_fd, const struct bpf_link_update_opts *opts);
int bpf_link_detach(int link_fd);
int bpf_raw_tracepoint_open(const char *name, int prog_fd);

struct bpf_xdp_query_opts {
    size_t sz; __u32 prog_id; __u32 drv_prog_id; __u32 hw_prog_id; __u32 skb_prog_id;
    __u8 attach_mode; ...;
};
int bpf_xdp_query(int ifindex, int flags, struct bpf_xdp_query_opts *opts);

struct bpf_test_run_opts {
    size_t sz; const void *data_in; void *data_out; __u32 data_size_in; __u32 data_size_out;
    const void *ctx_in; void *ctx_out; __u32 ctx_size_in; __u32 ctx_size_out;
    __u32 retval; int repeat; __u32 duration; __u32 flags; __u32 cpu; __u32 batch_size; ...;
};
int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts);

int bpf_enable_stats(enum bpf_stats_type type);

struct ring_buffer_opts { size_t sz; ...; };
void ring_buffer__free(struct ring_buffer *rb);
int ring_buffer__poll(struct ring_buffer *rb, int timeout_ms);
int ring_buffer__consume(struct ring_buffer *rb);
int ring_buffer__epoll_fd(const struct ring_buffer *rb);
"""

SHIM_CDEF = """
/* Records copied out of the ring by the C callback, each as [u32 size][u32 0][data, 8-aligned]. */
struct pk_rb_batch { char *data; size_t used; size_t capacity; size_t count; size_t dropped; };
struct ring_buffer *pk_ring_buffer_new(int map_fd, struct pk_rb_batch *batch);
void pk_rb_batch_free(struct pk_rb_batch *batch);

/* libbpf's print callback, formatted in C and handed to Python. */
extern "Python" void pk_libbpf_log(int level, const char *message);
void pk_route_libbpf_log(void);

/* struct bpf_link_info has anonymous unions cffi cannot describe partially. */
int pk_link_info(int link_fd, __u32 *id, __u32 *type, __u32 *prog_id, __u32 *xdp_ifindex);

const void *pingkiller_bpf__elf_bytes(size_t *sz);
"""

SHIM_SOURCE = r"""
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/if_link.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pingkiller.h"
#include "pingkiller.skel.h"

struct pk_rb_batch { char *data; size_t used; size_t capacity; size_t count; size_t dropped; };

static int pk_rb_collect(void *ctx, void *data, size_t size)
{
    struct pk_rb_batch *batch = ctx;
    size_t need = 8 + ((size + 7) & ~(size_t)7);

    if (batch->used + need > batch->capacity) {
        size_t capacity = batch->capacity ? batch->capacity : 65536;
        char *grown;

        while (batch->used + need > capacity)
            capacity *= 2;
        grown = realloc(batch->data, capacity);
        if (!grown) {
            batch->dropped++;
            return 0;
        }
        batch->data = grown;
        batch->capacity = capacity;
    }
    *(__u32 *)(batch->data + batch->used) = (__u32)size;
    *(__u32 *)(batch->data + batch->used + 4) = 0;
    memcpy(batch->data + batch->used + 8, data, size);
    batch->used += need;
    batch->count++;
    return 0;
}

static struct ring_buffer *pk_ring_buffer_new(int map_fd, struct pk_rb_batch *batch)
{
    return ring_buffer__new(map_fd, pk_rb_collect, batch, NULL);
}

static void pk_rb_batch_free(struct pk_rb_batch *batch)
{
    free(batch->data);
    batch->data = NULL;
    batch->used = batch->capacity = batch->count = batch->dropped = 0;
}

static void pk_libbpf_log(int level, const char *message);

static int pk_print(enum libbpf_print_level level, const char *format, va_list args)
{
    /* Whole messages: libbpf prints a verifier log of any length in one call.
     * (vasprintf is a GNU extension: Python.h, included first, defines _GNU_SOURCE.) */
    char *message = NULL;

    if (vasprintf(&message, format, args) < 0)
        return 0;
    pk_libbpf_log((int)level, message);
    free(message);
    return 0;
}

static void pk_route_libbpf_log(void)
{
    libbpf_set_print(pk_print);
}

static int pk_link_info(int link_fd, __u32 *id, __u32 *type, __u32 *prog_id, __u32 *xdp_ifindex)
{
    struct bpf_link_info info;
    __u32 len = sizeof(info);

    memset(&info, 0, sizeof(info));
    if (bpf_obj_get_info_by_fd(link_fd, &info, &len))
        return -errno;
    *id = info.id;
    *type = info.type;
    *prog_id = info.prog_id;
    *xdp_ifindex = info.type == BPF_LINK_TYPE_XDP ? info.xdp.ifindex : 0;
    return 0;
}
"""


def abi_cdef(header: Path) -> str:
    """kern/pingkiller.h as cffi reads it: preprocessor lines dropped but integer defines."""
    kept = []
    for line in header.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if re.fullmatch(r"#define\s+\w+\s+\d+", stripped):
                kept.append(stripped)
            continue
        kept.append(line)
    return "\n".join(kept)


def check_requirements() -> None:
    """Stop with one line naming the missing package, before anything cryptic can fail."""
    for need, package in REQUIREMENTS.items():
        found = Path(need).exists() if need.startswith("/") else shutil.which(need)
        if not found:
            sys.exit(f"error: {need} not found: install it with `apt-get install {package}`")


def build_skeleton() -> None:
    """kern/pingkiller.bpf.c -> BPF object -> skeleton header, by the Makefile's rules."""
    check_requirements()
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "skeleton"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        sys.exit("error: building the BPF object failed (see above)")


def make_ffibuilder() -> FFI:
    """The FFI whose compilation is pingkiller._native (the skeleton must exist to compile it)."""
    builder = FFI()
    builder.cdef(LIBBPF_CDEF + abi_cdef(ABI_HEADER) + SHIM_CDEF)
    builder.set_source(
        "pingkiller._native",
        SHIM_SOURCE,
        libraries=["bpf"],
        include_dirs=[str(BPF_BUILD_DIR), str(ROOT / "kern")],
        extra_compile_args=["-O2", "-Wno-unused-function"],
        # No DWARF: it would carry the build machine's paths into the wheel.
        extra_link_args=["-Wl,--strip-debug"],
    )
    return builder


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    build_skeleton()
    built = Path(ffibuilder.compile(tmpdir=str(ROOT), verbose=False))
    # cffi names an in-place build for this interpreter, but the code is Py_LIMITED_API
    # (as in the wheel): one abi3 file, so no stale build can shadow it.
    for stale in built.parent.glob("_native.*.so"):
        if stale != built:
            stale.unlink()
    built.rename(built.parent / "_native.abi3.so")
