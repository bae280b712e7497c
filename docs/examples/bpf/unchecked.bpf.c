// SPDX-License-Identifier: GPL-2.0
/*
 * A program the verifier rejects on purpose (see docs/troubleshooting.md): it reads
 * the EtherType without first checking that the packet is long enough.
 */
#include "uapi.h"
#include <bpf/bpf_helpers.h>

#define UNCHECKED_ETH_P_ARP_BE 0x0608	/* 0x0806 in network order, on little endian */

SEC("xdp")
int unchecked(struct xdp_md *ctx)
{
	struct ethhdr *eth = (void *)(long)ctx->data;

	/* missing: if ((void *)(eth + 1) > (void *)(long)ctx->data_end) return XDP_PASS; */
	return eth->h_proto == UNCHECKED_ETH_P_ARP_BE ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
