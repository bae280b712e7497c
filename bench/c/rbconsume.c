// SPDX-License-Identifier: GPL-2.0
/*
 * The limit for event delivery: a C consumer of a pinned ring buffer on libbpf's
 * ring_buffer__poll, counting records.  Prints "ready" once subscribed, then one
 * JSON line when `expected` records arrived or the ring stayed idle for idle_ms.
 *
 * usage: rbconsume PIN EXPECTED IDLE_MS
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

static unsigned long long received;
static double first_at, last_at;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int on_record(void *ctx, void *data, size_t size)
{
	if (!received++)
		first_at = now();
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long expected;
	struct ring_buffer *rb;
	int fd, idle_ms, err;
	double idle_since;

	if (argc != 4) {
		fprintf(stderr, "usage: %s PIN EXPECTED IDLE_MS\n", argv[0]);
		return 2;
	}
	expected = strtoull(argv[2], NULL, 10);
	idle_ms = atoi(argv[3]);
	fd = bpf_obj_get(argv[1]);
	if (fd < 0) {
		perror("bpf_obj_get");
		return 1;
	}
	rb = ring_buffer__new(fd, on_record, NULL, NULL);
	if (!rb) {
		perror("ring_buffer__new");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	idle_since = now();
	while (!expected || received < expected) {
		unsigned long long before = received;

		err = ring_buffer__poll(rb, 100);
		if (err < 0) {
			fprintf(stderr, "ring_buffer__poll: %d\n", err);
			break;
		}
		if (received != before) {
			last_at = now();
			idle_since = last_at;
		} else if ((now() - idle_since) * 1000 > idle_ms) {
			break;
		}
	}
	printf("{\"received\": %llu, \"seconds\": %.9f}\n", received,
	       received ? last_at - first_at : 0.0);
	ring_buffer__free(rb);
	return 0;
}
