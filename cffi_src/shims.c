// SPDX-License-Identifier: GPL-2.0
/*
 * The binding's C shims, compiled into pingkiller.bpf._libbpf beside the code cffi
 * generates. Warnings are errors here whatever flags the build uses (cffi's own
 * generated file is not held to that).
 */
#pragma GCC diagnostic error "-Wall"
#pragma GCC diagnostic error "-Wextra"

#define _GNU_SOURCE	/* vasprintf */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "shims.h"

#define PK_RB_RECORD_HEADER	8
#define PK_RB_FIRST_CAPACITY	65536
/* What the callback returns to stop libbpf at batch->limit records (the last one is kept). */
#define PK_RB_LIMIT_REACHED	(-ENOBUFS)

static int pk_rb_collect(void *ctx, void *data, size_t size)
{
	struct pk_rb_batch *batch = ctx;
	size_t need = PK_RB_RECORD_HEADER + ((size + 7) & ~(size_t)7);

	/*
	 * libbpf stores the consumer position after each record, so during the callback it
	 * is where this record starts (libbpf's ringbuf_process_ring, every version so far).
	 */
	if (__atomic_load_n(batch->consumer_pos, __ATOMIC_RELAXED) < batch->mark)
		batch->marked++;
	if (batch->used + need > batch->capacity) {
		size_t capacity = batch->capacity ? batch->capacity : PK_RB_FIRST_CAPACITY;
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
	memcpy(batch->data + batch->used + PK_RB_RECORD_HEADER, data, size);
	batch->used += need;
	batch->count++;
	/*
	 * Returning an error makes libbpf store the consumer position past this record and
	 * stop: the records after it stay in the ring for the next poll (or reader).
	 */
	if (batch->limit && batch->count >= batch->limit)
		return PK_RB_LIMIT_REACHED;
	return 0;
}

static void pk_rb_unmap(struct pk_rb_batch *batch)
{
	if (batch->consumer_pos)
		munmap(batch->consumer_pos, batch->page_size);
	if (batch->producer_pos)
		munmap((void *)batch->producer_pos, batch->page_size);
	batch->consumer_pos = NULL;
	batch->producer_pos = NULL;
}

/*
 * libbpf's ring buffer on map_fd, copying into batch; batch also maps the ring's consumer
 * page (read-write: the kernel allows it on a read-write map fd) and producer page.
 * NULL with errno set on failure.
 */
struct ring_buffer *pk_ring_buffer_new(int map_fd, struct pk_rb_batch *batch)
{
	struct ring_buffer *rb;
	void *page;
	int err;

	batch->page_size = (size_t)sysconf(_SC_PAGESIZE);
	page = mmap(NULL, batch->page_size, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (page == MAP_FAILED)
		return NULL;
	batch->consumer_pos = page;
	page = mmap(NULL, batch->page_size, PROT_READ, MAP_SHARED, map_fd, (off_t)batch->page_size);
	if (page == MAP_FAILED) {
		err = errno;
		pk_rb_unmap(batch);
		errno = err;
		return NULL;
	}
	batch->producer_pos = page;
	rb = ring_buffer__new(map_fd, pk_rb_collect, batch, NULL);
	if (!rb) {
		err = errno;
		pk_rb_unmap(batch);
		errno = err;
	}
	return rb;
}

/* ring_buffer__poll/__consume, where stopping at batch->limit is no error. */
static int pk_rb_result(const struct pk_rb_batch *batch, int result)
{
	if (result == PK_RB_LIMIT_REACHED && batch->limit && batch->count >= batch->limit)
		return (int)batch->count;
	return result;
}

int pk_ring_buffer_poll(struct ring_buffer *rb, struct pk_rb_batch *batch, int timeout_ms)
{
	return pk_rb_result(batch, ring_buffer__poll(rb, timeout_ms));
}

int pk_ring_buffer_consume(struct ring_buffer *rb, struct pk_rb_batch *batch)
{
	return pk_rb_result(batch, ring_buffer__consume(rb));
}

__u64 pk_rb_consumer_pos(const struct pk_rb_batch *batch)
{
	return __atomic_load_n(batch->consumer_pos, __ATOMIC_ACQUIRE);
}

__u64 pk_rb_producer_pos(const struct pk_rb_batch *batch)
{
	return __atomic_load_n(batch->producer_pos, __ATOMIC_ACQUIRE);
}

/*
 * Move the consumer position to the producer position: what is buffered now is never read
 * (the kernel reuses the space). The producer position is always a record boundary. Returns
 * the bytes skipped (record headers and padding included). It only moves forward: a reader
 * in another process that went further meanwhile is not sent back.
 */
__u64 pk_rb_skip(struct pk_rb_batch *batch)
{
	unsigned long consumer = __atomic_load_n(batch->consumer_pos, __ATOMIC_ACQUIRE);
	unsigned long producer = __atomic_load_n(batch->producer_pos, __ATOMIC_ACQUIRE);

	while (producer > consumer) {
		if (__atomic_compare_exchange_n(batch->consumer_pos, &consumer, producer, 0,
						__ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
			return producer - consumer;
	}
	return 0;
}

void pk_rb_batch_free(struct pk_rb_batch *batch)
{
	free(batch->data);
	batch->data = NULL;
	batch->used = batch->capacity = batch->count = batch->dropped = batch->marked = 0;
	pk_rb_unmap(batch);
}

static int pk_print(enum libbpf_print_level level, const char *format, va_list args)
{
	/* Whole messages: libbpf prints a verifier log of any length in one call. */
	char *message = NULL;

	if (vasprintf(&message, format, args) < 0)
		return 0;
	pk_libbpf_log((int)level, message);
	free(message);
	return 0;
}

void pk_route_libbpf_log(void)
{
	libbpf_set_print(pk_print);
}

/*
 * tcx links (Linux 6.6) are newer than the <linux/bpf.h> this may be built with: their
 * part of bpf_link_info's union is two words, the interface and the attach type.
 */
#define PK_BPF_LINK_TYPE_TCX 11
struct pk_tcx_link_info {
	__u32 ifindex;
	__u32 attach_type;
};

int pk_link_info(int link_fd, __u32 *id, __u32 *type, __u32 *prog_id, __u32 *ifindex,
		 __u32 *attach_type)
{
	struct bpf_link_info info;
	const struct pk_tcx_link_info *tcx = (const void *)&info.xdp;
	__u32 len = sizeof(info);

	memset(&info, 0, sizeof(info));
	if (bpf_obj_get_info_by_fd(link_fd, &info, &len))
		return -errno;
	*id = info.id;
	*type = info.type;
	*prog_id = info.prog_id;
	*ifindex = 0;
	*attach_type = 0;
	if (info.type == BPF_LINK_TYPE_XDP) {
		*ifindex = info.xdp.ifindex;
	} else if (info.type == PK_BPF_LINK_TYPE_TCX) {
		*ifindex = tcx->ifindex;
		*attach_type = tcx->attach_type;
	}
	return 0;
}
