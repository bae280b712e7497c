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
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "shims.h"

#define PK_RB_RECORD_HEADER	8
#define PK_RB_FIRST_CAPACITY	65536

static int pk_rb_collect(void *ctx, void *data, size_t size)
{
	struct pk_rb_batch *batch = ctx;
	size_t need = PK_RB_RECORD_HEADER + ((size + 7) & ~(size_t)7);

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
	return 0;
}

struct ring_buffer *pk_ring_buffer_new(int map_fd, struct pk_rb_batch *batch)
{
	return ring_buffer__new(map_fd, pk_rb_collect, batch, NULL);
}

void pk_rb_batch_free(struct pk_rb_batch *batch)
{
	free(batch->data);
	batch->data = NULL;
	batch->used = batch->capacity = batch->count = batch->dropped = 0;
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

int pk_link_info(int link_fd, __u32 *id, __u32 *type, __u32 *prog_id, __u32 *xdp_ifindex)
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
