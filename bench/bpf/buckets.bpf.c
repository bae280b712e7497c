// SPDX-License-Identifier: GPL-2.0
/*
 * Two ways to keep a rate's bucket (issue #24), for the cost comparison of bench section
 * 1c: the generic cell rate algorithm on one 64-bit time in an LRU hash, moved by
 * compare-and-swap (what pingkiller does), and the same time under a bpf_spin_lock in a
 * plain hash (an LRU hash refuses a spin lock in its values). Both key the bucket by the
 * frame's IPv4 source and run on jiffies, as pingkiller does; nothing else.
 */
#include "uapi.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct bpf_spin_lock {
	__u32 val;
};

struct rate {
	__u64 interval_ns;
	__u64 tolerance_ns;
	__u32 ns_per_tick;
	__u32 pad;
};

struct locked_bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 tat;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rate);
} bucket_rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} cas_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct locked_bucket);
} locked_buckets SEC(".maps");

static __always_inline int source(struct xdp_md *ctx, __u32 *addr)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;

	if (data + 34 > end)
		return -1;
	__builtin_memcpy(addr, data + 26, 4);
	return 0;
}

SEC("xdp")
int bucket_cas(struct xdp_md *ctx)
{
	struct rate *rate;
	__u64 *tat, now, first;
	__u32 zero = 0, addr;

	rate = bpf_map_lookup_elem(&bucket_rate, &zero);
	if (!rate || source(ctx, &addr))
		return XDP_PASS;
	now = bpf_jiffies64() * rate->ns_per_tick;
	tat = bpf_map_lookup_elem(&cas_buckets, &addr);
	if (!tat) {
		first = now + rate->interval_ns;
		bpf_map_update_elem(&cas_buckets, &addr, &first, BPF_NOEXIST);
		return XDP_PASS;
	}
#pragma clang loop unroll(disable)
	for (int i = 0; i < 4; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 base = old > now ? old : now;

		if (base - now > rate->tolerance_ns)
			return XDP_DROP;
		if (__sync_val_compare_and_swap(tat, old, base + rate->interval_ns) == old)
			return XDP_PASS;
	}
	return XDP_DROP;
}

SEC("xdp")
int bucket_lock(struct xdp_md *ctx)
{
	struct locked_bucket *bucket;
	struct rate *rate;
	__u32 zero = 0, addr;
	__u64 now, base;
	int verdict;

	rate = bpf_map_lookup_elem(&bucket_rate, &zero);
	if (!rate || source(ctx, &addr))
		return XDP_PASS;
	now = bpf_jiffies64() * rate->ns_per_tick;
	bucket = bpf_map_lookup_elem(&locked_buckets, &addr);
	if (!bucket) {
		struct locked_bucket fresh = { .tat = now + rate->interval_ns };

		bpf_map_update_elem(&locked_buckets, &addr, &fresh, BPF_NOEXIST);
		return XDP_PASS;
	}
	bpf_spin_lock(&bucket->lock);
	base = bucket->tat > now ? bucket->tat : now;
	if (base - now > rate->tolerance_ns) {
		verdict = XDP_DROP;
	} else {
		bucket->tat = base + rate->interval_ns;
		verdict = XDP_PASS;
	}
	bpf_spin_unlock(&bucket->lock);
	return verdict;
}
