// SPDX-License-Identifier: GPL-2.0
/* The limit: an XDP program that drops every frame and does nothing else. */
#include "uapi.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int null_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

/* Dropped frames of null_drop_count, per CPU (slot 0). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} null_drops SEC(".maps");

/* The limit on a real path, where drops must be counted: one per-CPU increment, XDP_DROP. */
SEC("xdp")
int null_drop_count(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *count = bpf_map_lookup_elem(&null_drops, &zero);

	if (count)
		*count += 1;
	return XDP_DROP;
}

/* Lets redirected frames reach the stack (a veth redirect target needs an XDP program). */
SEC("xdp")
int null_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
