// SPDX-License-Identifier: GPL-2.0
/*
 * The limit for loading a list: read addresses (or prefixes) one per line, pack them
 * as pingkiller's rule keys and write them into a pinned rule map, either with one
 * bpf_map_update_batch call ("batch") or with one bpf_map_update_elem per rule
 * ("single").  Prints the wall time (file read + parse + updates) in seconds.
 *
 * A per-CPU rule map gets the rule in every possible CPU's copy.  With TRIE_PIN (an LPM
 * trie whose value is its own key, beside a per-CPU prefix map) each prefix goes there too.
 *
 * usage: loadrules batch|single MAP_PIN FILE [TRIE_PIN]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define BATCH 65536

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
	size_t cap = 1 << 16, count = 0, key_size = 0, i, copies = 1, c;
	struct bpf_map_info info = {};
	__u32 info_len = sizeof(info);
	unsigned char *keys;
	struct rule *values;
	char line[128];
	double start;
	FILE *file;
	int fd, trie = -1, err = 0, batch;

	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: %s batch|single MAP_PIN FILE [TRIE_PIN]\n", argv[0]);
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
	if (argc == 5 && (trie = bpf_obj_get(argv[4])) < 0) {
		perror(argv[4]);
		return 1;
	}
	if (bpf_obj_get_info_by_fd(fd, &info, &info_len)) {
		perror("map info");
		return 1;
	}
	if (info.type == BPF_MAP_TYPE_PERCPU_HASH || info.type == BPF_MAP_TYPE_LRU_PERCPU_HASH)
		copies = libbpf_num_possible_cpus();
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
	values = calloc(count * copies, sizeof(*values));
	for (i = 0; i < count; i++)
		for (c = 0; c < copies; c++)
			values[i * copies + c].action = 2;
	if (batch) {
		/* BATCH rules a call: one call of a million per-CPU values fails with ENOMEM */
		for (i = 0; i < count && !err; i += BATCH) {
			__u32 done = count - i < BATCH ? count - i : BATCH;

			err = bpf_map_update_batch(fd, keys + i * key_size, &values[i * copies],
						   &done, NULL);
		}
	} else {
		for (i = 0; i < count && !err; i++)
			err = bpf_map_update_elem(fd, keys + i * key_size, &values[i * copies], BPF_ANY);
	}
	for (i = 0; trie >= 0 && i < count && !err; i++)	/* the trie has no batch update */
		err = bpf_map_update_elem(trie, keys + i * key_size, keys + i * key_size, BPF_ANY);
	if (err) {
		fprintf(stderr, "update: %s\n", strerror(errno));
		return 1;
	}
	printf("{\"rules\": %zu, \"seconds\": %.6f}\n", count, now() - start);
	return 0;
}
