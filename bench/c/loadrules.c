// SPDX-License-Identifier: GPL-2.0
/*
 * The limit for loading a list: read addresses (or prefixes) one per line, pack them
 * as pingkiller's rule keys and write them into a pinned rule map, either with one
 * bpf_map_update_batch call ("batch") or with one bpf_map_update_elem per rule
 * ("single").  Prints the wall time (file read + parse + updates) in seconds.
 *
 * usage: loadrules batch|single MAP_PIN FILE
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>

struct rule { unsigned int action, pad; unsigned long long hits; };
struct prefix { unsigned int prefixlen; unsigned char addr[4]; };

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	size_t cap = 1 << 16, count = 0, key_size = 0, i;
	unsigned char *keys;
	struct rule *values;
	char line[128];
	double start;
	FILE *file;
	int fd, err = 0, batch;

	if (argc != 4) {
		fprintf(stderr, "usage: %s batch|single MAP_PIN FILE\n", argv[0]);
		return 2;
	}
	batch = !strcmp(argv[1], "batch");
	start = now();
	fd = bpf_obj_get(argv[2]);
	file = fopen(argv[3], "r");
	if (fd < 0 || !file) {
		perror(argv[fd < 0 ? 2 : 3]);
		return 1;
	}
	keys = malloc(cap * sizeof(struct prefix));
	while (fgets(line, sizeof(line), file)) {
		char *slash = strchr(line, '/');
		struct prefix p = { .prefixlen = 32 };

		line[strcspn(line, "\r\n")] = 0;
		if (slash) {
			*slash = 0;
			p.prefixlen = atoi(slash + 1);
		}
		if (inet_pton(AF_INET, line, p.addr) != 1) {
			fprintf(stderr, "bad address %s\n", line);
			return 1;
		}
		key_size = slash ? sizeof(p) : 4;
		if (count == cap) {
			cap *= 2;
			keys = realloc(keys, cap * sizeof(struct prefix));
		}
		memcpy(keys + count * key_size, slash ? (void *)&p : (void *)p.addr, key_size);
		count++;
	}
	values = calloc(count, sizeof(*values));
	for (i = 0; i < count; i++)
		values[i].action = 2;
	if (batch) {
		__u32 done = count;

		err = bpf_map_update_batch(fd, keys, values, &done, NULL);
	} else {
		for (i = 0; i < count && !err; i++)
			err = bpf_map_update_elem(fd, keys + i * key_size, &values[i], BPF_ANY);
	}
	if (err) {
		fprintf(stderr, "update: %s\n", strerror(errno));
		return 1;
	}
	printf("{\"rules\": %zu, \"seconds\": %.6f}\n", count, now() - start);
	return 0;
}
