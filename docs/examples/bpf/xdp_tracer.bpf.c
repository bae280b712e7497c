// SPDX-License-Identifier: GPL-2.0
/*
 * The workshop's XDP tracer: report source, destination and protocol of every
 * IPv4 packet through a ring buffer (not bpf_printk), and let everything pass.
 */
#include "uapi.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define TRACER_ETH_P_IP 0x0800

struct packet_event {
	__u32 src;	/* network byte order */
	__u32 dst;
	__u32 length;
	__u8 protocol;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} packets SEC(".maps");

SEC("xdp")
int xdp_tracer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct packet_event *event;
	struct iphdr *ip;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(TRACER_ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	event = bpf_ringbuf_reserve(&packets, sizeof(*event), 0);
	if (!event)
		return XDP_PASS;
	event->src = ip->saddr;
	event->dst = ip->daddr;
	event->length = data_end - data;
	event->protocol = ip->protocol;
	__builtin_memset(event->pad, 0, sizeof(event->pad));
	bpf_ringbuf_submit(event, 0);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
