// SPDX-License-Identifier: GPL-2.0
/*
 * Traffic generator: run with BPF_PROG_RUN + BPF_F_TEST_XDP_LIVE_FRAMES, it redirects
 * every generated frame into the interface whose ifindex sits in target[0].
 */
#include "uapi.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

SEC("xdp")
int gen_redirect(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&target, &zero);

	if (!ifindex)
		return XDP_ABORTED;
	return bpf_redirect(*ifindex, 0);
}
