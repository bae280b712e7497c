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
 * A per-CPU hash allocates each new element's copies from a cache the kernel refills in
 * the background, so a burst of inserts can get ENOMEM for a moment: like pingkiller
 * (pingkiller/rules.py insert), the loader then pauses 5 ms and goes on where it stopped,
 * giving up after 200 pauses in a row without progress.  It prints how many it took.
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
#define ENOMEM_PAUSES 200		/* as pingkiller/rules.py _ENOMEM_PAUSES */
#define ENOMEM_PAUSE_NS 5000000L	/* and _ENOMEM_PAUSE_SECONDS */

struct rule { unsigned int action, pad; unsigned long long hits; };
struct prefix { unsigned int prefixlen; unsigned char addr[4]; };

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* After a failed update: 1 to try again (a transient ENOMEM, paused for), 0 to stop. */
static int pause_for_memory(int progress, int *pauses, int *total)
{
	struct timespec pause = { 0, ENOMEM_PAUSE_NS };

	if (errno != ENOMEM)
		return 0;
	*pauses = progress ? 0 : *pauses + 1;
	if (*pauses >= ENOMEM_PAUSES)
		return 0;
	(*total)++;
	nanosleep(&pause, NULL);
	return 1;
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
	int fd, trie = -1, err = 0, batch, pauses = 0, paused = 0;

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
		for (i = 0; i < count && !err; ) {
			__u32 done = count - i < BATCH ? count - i : BATCH;

			err = bpf_map_update_batch(fd, keys + i * key_size, &values[i * copies],
						   &done, NULL);
			i += done;	/* the kernel says how many it wrote, on failure too */
			if (!err)
				pauses = 0;
			else if (pause_for_memory(done, &pauses, &paused))
				err = 0;
		}
	} else {
		for (i = 0; i < count; ) {
			if (!bpf_map_update_elem(fd, keys + i * key_size, &values[i * copies],
						 BPF_ANY)) {
				i++;
				pauses = 0;
			} else if (!pause_for_memory(0, &pauses, &paused)) {
				err = -1;
				break;
			}
		}
	}
	for (i = 0; trie >= 0 && i < count && !err; i++)	/* the trie has no batch update */
		err = bpf_map_update_elem(trie, keys + i * key_size, keys + i * key_size, BPF_ANY);
	if (err) {
		fprintf(stderr, "update: %s\n", strerror(errno));
		return 1;
	}
	printf("{\"rules\": %zu, \"seconds\": %.6f, \"enomem_pauses\": %d}\n", count,
	       now() - start, paused);
	return 0;
}
