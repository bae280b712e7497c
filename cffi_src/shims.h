/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What libbpf's API makes awkward from Python, done in C (shims.c). The pk_ prefix only
 * keeps these names apart from libbpf's; nothing here knows of pingkiller's program.
 */
#ifndef PINGKILLER_SHIMS_H
#define PINGKILLER_SHIMS_H

#include <stddef.h>
#include <linux/types.h>

struct ring_buffer;

/*
 * Records copied out of the ring by the C callback, each as [u32 size][u32 0][data, 8-aligned],
 * and the ring's consumer and producer pages, mapped here because libbpf has no API to move
 * the consumer position (skip what is buffered) or to read it before a record.
 */
struct pk_rb_batch {
	char *data;
	size_t used;
	size_t capacity;
	size_t count;
	size_t dropped;
	size_t limit;		/* a poll stops after this many records (0: no limit) */
	__u64 mark;		/* records that start before this ring position... */
	size_t marked;		/* ...are counted here (they come first in the batch) */
	unsigned long *consumer_pos;		/* the consumer page, mapped read-write */
	const unsigned long *producer_pos;	/* the producer page, mapped read-only */
	size_t page_size;
};

struct ring_buffer *pk_ring_buffer_new(int map_fd, struct pk_rb_batch *batch);
int pk_ring_buffer_poll(struct ring_buffer *rb, struct pk_rb_batch *batch, int timeout_ms);
int pk_ring_buffer_consume(struct ring_buffer *rb, struct pk_rb_batch *batch);
__u64 pk_rb_consumer_pos(const struct pk_rb_batch *batch);
__u64 pk_rb_producer_pos(const struct pk_rb_batch *batch);
__u64 pk_rb_skip(struct pk_rb_batch *batch);
void pk_rb_batch_free(struct pk_rb_batch *batch);

/* libbpf's print callback, formatted in C and handed to Python (defined by cffi). */
void pk_libbpf_log(int level, const char *message);
void pk_route_libbpf_log(void);

/* struct bpf_link_info has anonymous unions cffi cannot describe partially. */
int pk_link_info(int link_fd, __u32 *id, __u32 *type, __u32 *prog_id, __u32 *ifindex,
                 __u32 *attach_type);

#endif /* PINGKILLER_SHIMS_H */
