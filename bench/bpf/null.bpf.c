// SPDX-License-Identifier: GPL-2.0
/* The limit: an XDP program that drops every frame and does nothing else. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("xdp")
int null_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

/* Lets redirected frames reach the stack (a veth redirect target needs an XDP program). */
SEC("xdp")
int null_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}
