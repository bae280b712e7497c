// SPDX-License-Identifier: GPL-2.0
/*
 * The limit: an XDP program that drops every frame and does nothing else; the tc
 * references (null_tc, null_tc_drop_count) at the end.
 */
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

static __always_inline void count_drop(void)
{
	__u32 zero = 0;
	__u64 *count = bpf_map_lookup_elem(&null_drops, &zero);

	if (count)
		*count += 1;
}

/* The limit on a real path, where drops must be counted: one per-CPU increment, XDP_DROP. */
SEC("xdp")
int null_drop_count(struct xdp_md *ctx)
{
	count_drop();
	return XDP_DROP;
}

/* Lets redirected frames reach the stack (a veth redirect target needs an XDP program). */
SEC("xdp")
int null_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

/* Source addresses a floor_lookup program looks up (the value is never read). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1048576);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, __u64);
} floor_sources SEC(".maps");

/*
 * The floor of any rule filter: bounds-check Ethernet + IPv4, look the source up in a hash
 * map of the same shape as pingkiller's rules_v4, count per CPU, drop.  No VLAN walk, no
 * ICMP check, no events: what pingkiller costs above this is its own work.
 */
SEC("xdp")
int floor_lookup(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	__u32 zero = 0;
	__u64 *count;

	if ((void *)(iph + 1) > data_end || eth->h_proto != __builtin_bswap16(0x0800))
		return XDP_PASS;
	if (!bpf_map_lookup_elem(&floor_sources, &iph->saddr))
		return XDP_PASS;
	count = bpf_map_lookup_elem(&null_drops, &zero);
	if (count)
		*count += 1;
	return XDP_DROP;
}

/*
 * The tc reference (section 1b): a SCHED_CLS program that passes every packet on to the
 * next program (TCX_NEXT, as pingkill_tc_in passes) and does nothing else.
 */
SEC("tc")
int null_tc(struct __sk_buff *skb)
{
	return TCX_NEXT;
}

/* The limit at tc ingress on a real path (section 2c): one per-CPU increment, TC_ACT_SHOT. */
SEC("tc")
int null_tc_drop_count(struct __sk_buff *skb)
{
	count_drop();
	return TC_ACT_SHOT;
}
