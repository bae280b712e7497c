"""shims.h / shims.c: the binding's C helpers (ring-buffer batch copy, libbpf log, link info)."""

# Relative to the repository root, where setup.py and build.py build from.
SOURCES = ["cffi_src/shims.c"]
INCLUDE_DIRS = ["cffi_src"]

INCLUDES = """
#include "shims.h"
"""

CDEF = """
struct pk_rb_batch {
    char *data; size_t used; size_t capacity; size_t count; size_t dropped;
    size_t limit; __u64 mark; size_t marked; ...;
};
struct ring_buffer *pk_ring_buffer_new(int map_fd, struct pk_rb_batch *batch);
int pk_ring_buffer_poll(struct ring_buffer *rb, struct pk_rb_batch *batch, int timeout_ms);
int pk_ring_buffer_consume(struct ring_buffer *rb, struct pk_rb_batch *batch);
__u64 pk_rb_consumer_pos(const struct pk_rb_batch *batch);
__u64 pk_rb_producer_pos(const struct pk_rb_batch *batch);
__u64 pk_rb_skip(struct pk_rb_batch *batch);
void pk_rb_batch_free(struct pk_rb_batch *batch);

extern "Python+C" void pk_libbpf_log(int level, const char *message);
void pk_route_libbpf_log(void);

int pk_link_info(int link_fd, __u32 *id, __u32 *type, __u32 *prog_id, __u32 *ifindex,
                 __u32 *attach_type);
"""
