// SPDX-License-Identifier: GPL-2.0
/*
 * Baseline written like the usual blog example: drop every IPv4 ICMP echo request and
 * tell user space about it with bpf_ringbuf_output(..., BPF_RB_FORCE_WAKEUP), i.e. one
 * forced wakeup per packet and no rate limit.
 */
#include "uapi.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

struct blog_event {
	__u64 timestamp_ns;
	__u32 saddr;
	__u32 daddr;
	__u16 id;
	__u16 seq;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} rb SEC(".maps");

SEC("xdp")
int blog_ping(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	struct icmphdr *icmp;
	struct blog_event ev = {};

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(0x0800))
		return XDP_PASS;
	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end || iph->protocol != 1)
		return XDP_PASS;
	icmp = (void *)iph + iph->ihl * 4;
	if ((void *)(icmp + 1) > data_end || icmp->type != 8)
		return XDP_PASS;
	ev.timestamp_ns = bpf_ktime_get_ns();
	ev.saddr = iph->saddr;
	ev.daddr = iph->daddr;
	ev.id = bpf_ntohs(icmp->un.echo.id);
	ev.seq = bpf_ntohs(icmp->un.echo.sequence);
	bpf_ringbuf_output(&rb, &ev, sizeof(ev), BPF_RB_FORCE_WAKEUP);
	return XDP_DROP;
}
