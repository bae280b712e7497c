// SPDX-License-Identifier: GPL-2.0
/*
 * The receiving CPU's clock where live frames are refused (sections 2, 2b and 2c): the
 * time each CPU spends in the NET_RX softirq, from softirq_entry to softirq_exit, and how
 * many times it ran, counting only softirqs run in the bench's own threads (tgid in
 * owner[0]). A frame a thread sends into a veth is received in NET_RX on that thread's
 * CPU when its transmit ends (local_bh_enable), so this is the receive path's time: the
 * veth NAPI poll, the program under test, the stack behind it; not another process's
 * traffic that happens to be received on the same CPU.
 */
#include "uapi.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define NET_RX_SOFTIRQ 3	/* include/linux/interrupt.h: HI, TIMER, NET_TX, NET_RX, ... */

struct net_rx_clock {
	__u64 ns;	/* time in NET_RX so far */
	__u64 runs;	/* NET_RX softirqs completed */
	__u64 start;	/* entry of the one running now, 0 when none */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct net_rx_clock);
} net_rx SEC(".maps");

/* The process whose softirqs count (slot 0: its tgid). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} owner SEC(".maps");

SEC("raw_tp/softirq_entry")
int net_rx_entry(struct bpf_raw_tracepoint_args *ctx)
{
	__u32 zero = 0;
	__u32 *tgid;
	struct net_rx_clock *clock;

	if (ctx->args[0] != NET_RX_SOFTIRQ)
		return 0;
	tgid = bpf_map_lookup_elem(&owner, &zero);
	if (!tgid || *tgid != bpf_get_current_pid_tgid() >> 32)
		return 0;
	clock = bpf_map_lookup_elem(&net_rx, &zero);
	if (clock)
		clock->start = bpf_ktime_get_ns();	/* last: the probe's own time stays out */
	return 0;
}

SEC("raw_tp/softirq_exit")
int net_rx_exit(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 now = bpf_ktime_get_ns();		/* first, for the same reason */
	__u32 zero = 0;
	struct net_rx_clock *clock;

	if (ctx->args[0] != NET_RX_SOFTIRQ)
		return 0;
	clock = bpf_map_lookup_elem(&net_rx, &zero);
	if (clock && clock->start) {	/* set only in the owner's softirqs */
		clock->ns += now - clock->start;
		clock->runs += 1;
		clock->start = 0;
	}
	return 0;
}
