// SPDX-License-Identifier: GPL-2.0
/*
 * pingkiller: drop ICMP/ICMPv6 echo ("ping") at the driver, by policy.
 *
 * parse -> classify -> verdict -> count -> (maybe) event, one body
 * (pk_process) built three times: for XDP (SEC("xdp") pingkiller) and for tc
 * in each direction (SEC("tc") pingkill_tc_in, pingkill_tc_out; a tc program
 * cannot tell ingress from egress by itself).  The hook is a constant
 * argument, so each entry point holds only the helpers its program type may
 * call.  All three share the maps: one policy, one set of counters, one ring.
 * Anything the
 * parser does not understand is passed and counted as such, with one
 * exception that closes a bypass: a packet whose transport header cannot be
 * seen because it sits behind a fragment boundary or beyond the bounded
 * IPv6 extension-header walk is judged as if it were a ping ("suspect").
 */
#include "uapi.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "pingkiller.h"

/*
 * The ABI pinned where it is compiled (cffi never sees this file): the sizes
 * and offsets pingkiller/abi.py decodes with, and no padding of the compiler's
 * own, so no record reaches user space with a byte the program did not write.
 */
#define PK_ABI_SIZE(type, size) \
	_Static_assert(sizeof(struct type) == (size), #type " is not " #size " bytes")
#define PK_ABI_OFFSET(type, field, offset) \
	_Static_assert(__builtin_offsetof(struct type, field) == (offset), \
		       #type "." #field " is not at " #offset)

PK_ABI_SIZE(pk_limit, 24);
PK_ABI_OFFSET(pk_limit, tolerance_ns, 8);
PK_ABI_OFFSET(pk_limit, burst, 16);
PK_ABI_SIZE(pk_config, 160);
PK_ABI_OFFSET(pk_config, flags, 16);
PK_ABI_OFFSET(pk_config, event_window, 20);
PK_ABI_OFFSET(pk_config, icmp_v4, 24);
PK_ABI_OFFSET(pk_config, icmp_v6, 56);
PK_ABI_OFFSET(pk_config, limit_mask6, 88);
PK_ABI_OFFSET(pk_config, ns_per_tick, 104);
PK_ABI_OFFSET(pk_config, limit, 112);
PK_ABI_OFFSET(pk_config, total, 136);
PK_ABI_SIZE(pk_rule, 16);
PK_ABI_OFFSET(pk_rule, limit, 4);
PK_ABI_OFFSET(pk_rule, hits, 8);
PK_ABI_SIZE(pk_prefix_v4, 8);
PK_ABI_OFFSET(pk_prefix_v4, addr, 4);
PK_ABI_SIZE(pk_prefix_v6, 20);
PK_ABI_OFFSET(pk_prefix_v6, addr, 4);
PK_ABI_SIZE(pk_bucket_key, 24);
PK_ABI_OFFSET(pk_bucket_key, family, 4);
PK_ABI_OFFSET(pk_bucket_key, addr, 8);
PK_ABI_SIZE(pk_counter, 16);
PK_ABI_OFFSET(pk_counter, bytes, 8);
PK_ABI_SIZE(pk_timing, 16);
PK_ABI_OFFSET(pk_timing, total_ns, 8);
PK_ABI_SIZE(pk_event_budget, 16);
PK_ABI_OFFSET(pk_event_budget, sent, 8);
PK_ABI_SIZE(pk_event, 64);
PK_ABI_OFFSET(pk_event, ifindex, 8);
PK_ABI_OFFSET(pk_event, length, 12);
PK_ABI_OFFSET(pk_event, src, 16);
PK_ABI_OFFSET(pk_event, dst, 32);
PK_ABI_OFFSET(pk_event, verdict, 48);
PK_ABI_OFFSET(pk_event, icmp_code, 53);
PK_ABI_OFFSET(pk_event, icmp_id, 54);
PK_ABI_OFFSET(pk_event, icmp_seq, 56);
PK_ABI_OFFSET(pk_event, hook, 58);
PK_ABI_OFFSET(pk_event, direction, 59);
PK_ABI_OFFSET(pk_event, pad, 60);

/* The context fields the tc programs read, at their UAPI offsets (uapi.h). */
_Static_assert(__builtin_offsetof(struct __sk_buff, len) == 0, "__sk_buff.len");
_Static_assert(__builtin_offsetof(struct __sk_buff, ifindex) == 40, "__sk_buff.ifindex");
_Static_assert(__builtin_offsetof(struct __sk_buff, data) == 76, "__sk_buff.data");
_Static_assert(__builtin_offsetof(struct __sk_buff, data_end) == 80, "__sk_buff.data_end");
_Static_assert(sizeof(struct __sk_buff) == 192, "__sk_buff is not 192 bytes");

#define PK_ETH_P_IP	0x0800
#define PK_ETH_P_IPV6	0x86DD
#define PK_ETH_P_8021Q	0x8100
#define PK_ETH_P_8021AD	0x88A8

#define PK_IPPROTO_HOPOPTS	0
#define PK_IPPROTO_ICMP		1
#define PK_IPPROTO_ROUTING	43
#define PK_IPPROTO_FRAGMENT	44
#define PK_IPPROTO_AH		51
#define PK_IPPROTO_ICMPV6	58
#define PK_IPPROTO_DSTOPTS	60

#define PK_IP_MF		0x2000
#define PK_IP_OFFSET		0x1fff
#define PK_IP6_OFFSET		0xfff8

#define PK_ICMPV6_NDP_FIRST	133	/* router solicitation */
#define PK_ICMPV6_NDP_LAST	137	/* redirect */

/*
 * A stack of more than PK_MAX_VLAN_TAGS tags is walked by bpf_loop, as far as
 * PK_MAX_VLAN_TAGS + this many: Linux strips stacked priority (VID 0) tags and
 * delivers what they carry, so a ping hidden behind a deep stack must be
 * found.  That is 4 KiB of 4-byte tags; a deeper stack, which only a bigger
 * frame holds, is passed unparsed.
 */
#define PK_VLAN_WALK_MAX	1024
#define PK_VLAN_HLEN		4
/*
 * The same for a chain of more than PK_MAX_IPV6_EXT_HDRS extension headers:
 * Linux walks a chain and delivers what ends it (neighbour discovery included;
 * since IP6_MAX_EXT_HDRS_CNT, in 6.18.x and 7.1, only up to 12 headers), so it
 * is walked to its end.  Each header is at least 8 bytes: the walk reaches past
 * 4 KiB of them, and a longer chain, which only a bigger frame holds, is
 * judged as a ping.
 */
#define PK_IPV6_WALK_MAX	512
/*
 * How far into a frame the in-place parse goes on after a walk: the offset a
 * walk ends at, which the verifier cannot bound, moves the packet pointer only
 * once checked against this, never masked into range.  A walk that ends
 * further in (behind a kilobyte of tags or extension headers) hands the frame
 * to the copied parse (enum pk_read).
 */
#define PK_IN_PLACE_BYTES	1024

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pk_config);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PK_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, struct pk_counter);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PK_TIMING_COUNT);
	__type(key, __u32);
	__type(value, struct pk_timing);
} timing SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pk_event_budget);
} event_budget SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, PK_MAX_EXACT_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct pk_rule);
} rules_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, PK_MAX_EXACT_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct in6_addr);
	__type(value, struct pk_rule);
} rules_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, PK_MAX_PREFIX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pk_prefix_v4);
	__type(value, struct pk_rule);
} prefixes_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, PK_MAX_PREFIX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pk_prefix_v6);
	__type(value, struct pk_rule);
} prefixes_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, PK_MAX_PREFIX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pk_prefix_v4);
	__type(value, struct pk_prefix_v4);
} prefix_trie_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, PK_MAX_PREFIX_RULES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pk_prefix_v6);
	__type(value, struct pk_prefix_v6);
} prefix_trie_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PK_RINGBUF_BYTES);
} events SEC(".maps");

/* The rates of limit rules, by the index struct pk_rule.limit holds (0: unused). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PK_MAX_LIMITS);
	__type(key, __u32);
	__type(value, struct pk_limit);
} limits SEC(".maps");

/*
 * One bucket per rate and peer (struct pk_limit).  Least recently used ones
 * make room for new peers, so a flood of new sources cannot grow it; user
 * space may size it before load.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PK_DEFAULT_BUCKETS);
	__type(key, struct pk_bucket_key);
	__type(value, __u64);
} buckets SEC(".maps");

/* The bucket of struct pk_config.total, which every limited ping shares. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} rate_total SEC(".maps");

/* What the transport-layer parse found. */
enum pk_l4_class {
	PK_L4_PING,		/* a ping: an ICMP type the settings list */
	PK_L4_SUSPECT,		/* transport header unseen: judged as a ping */
	PK_L4_OTHER,		/* any other transport, or ICMP that is no ping */
	PK_L4_NDP,		/* ICMPv6 neighbour discovery: always passes */
	PK_L4_FRAGMENT,		/* non-first fragment */
	PK_L4_UNPARSED,		/* malformed or not understood */
	PK_L4_ELSEWHERE,	/* not judged yet: parse again, copying (enum pk_read) */
	PK_L4_ICMP,		/* ICMP but neighbour discovery: a ping if the settings say */
};

struct pk_vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

struct pk_icmp_hdr {
	__u8 type;
	__u8 code;
	__be16 checksum;
	__be16 id;
	__be16 sequence;
};

struct pk_ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;	/* in 8-byte units, not counting the first 8 bytes */
};

struct pk_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

/* What the parse learned about one packet. */
struct pk_packet {
	__u8 src[16];
	__u8 dst[16];
	__u8 family;
	__u8 protocol;
	__u8 icmp_type;
	__u8 icmp_code;
	__u16 icmp_id;
	__u16 icmp_seq;
};

/*
 * bpf_xdp_load_bytes or bpf_skb_load_bytes, by the hook: a constant, so each
 * program is left with the one its type may call.
 */
static __always_inline long load_bytes(void *ctx, const int hook, __u32 offset, void *to,
				       __u32 len)
{
	if (hook == PK_HOOK_TC)
		return bpf_skb_load_bytes(ctx, offset, to, len);
	return bpf_xdp_load_bytes(ctx, offset, to, len);
}

/*
 * A frame as the parse reads it.  The part the program addresses directly
 * runs from data to data_end: the whole of an XDP frame (the program is no
 * xdp.frags program, so a driver hands it every frame whole), the linear part
 * of an sk_buff.  length counts the whole frame or sk_buff from data; what
 * lies past data_end is read with load_bytes.
 */
struct pk_frame {
	void *ctx;		/* struct xdp_md or struct __sk_buff */
	void *data;
	void *data_end;
	__u32 length;
};

/*
 * How a parse reads headers.  The first parse of every frame reads them in
 * place, each behind a check against data_end: Ethernet, PK_MAX_VLAN_TAGS
 * tags, IPv4 with its options or IPv6 with PK_MAX_IPV6_EXT_HDRS extension
 * headers, the ICMP header; a deeper stack or a longer chain is walked with
 * load_bytes, and the parse goes on in place where the walk ended, within
 * PK_IN_PLACE_BYTES.  Where a header lies out of its reach (past that, or past
 * the end of an sk_buff's linear part, with more frame behind), it ends with
 * PK_L4_ELSEWHERE and the frame is parsed again from its start, every header
 * copied out with load_bytes and any stack or chain walked whole.  Frames reach
 * 64 KiB under generic XDP, at tc and on jumbo NICs, and no offset is ever
 * masked into the packet: the in-place parse moves its pointer by steps the
 * verifier bounds, the copied one never makes a pointer of an offset.  Both
 * see the same bytes, so a verdict does not depend on how the frame is laid
 * out.
 */
enum pk_read {
	PK_READ_IN_PLACE,
	PK_READ_COPIED,
};

/* Where a parse stands: in place, a pointer into the packet; copied, an offset. */
struct pk_place {
	void *at;		/* PK_READ_IN_PLACE */
	__u32 off;		/* PK_READ_COPIED: from data */
};

static __always_inline void advance(const int read, struct pk_place *place, __u32 len)
{
	if (read == PK_READ_IN_PLACE)
		place->at += len;
	else
		place->off += len;
}

static __always_inline __u32 offset_of(const struct pk_frame *frame, const int read,
				       const struct pk_place *place)
{
	if (read == PK_READ_IN_PLACE)
		return place->at - frame->data;
	return place->off;
}

/* Move place to offset off, where a walk ended; in place, false past PK_IN_PLACE_BYTES. */
static __always_inline bool move_to(const struct pk_frame *frame, const int read,
				    struct pk_place *place, __u32 off)
{
	if (read == PK_READ_COPIED) {
		place->off = off;
		return true;
	}
	if (off > PK_IN_PLACE_BYTES)
		return false;
	place->at = frame->data + off;
	return true;
}

/* Whether the n bytes at place lie in the frame (in place: before data_end). */
static __always_inline bool fits(const struct pk_frame *frame, const int read,
				 const struct pk_place *place, __u32 n)
{
	if (read == PK_READ_IN_PLACE)
		return place->at + n <= frame->data_end;
	return place->off + n <= frame->length;
}

/*
 * The n-byte header at place: *hdr points at it in the packet, or at buf, into
 * which it was copied.  False when it cannot be read (then see missing()).
 */
static __always_inline bool header_at(const struct pk_frame *frame, const int hook,
				      const int read, const struct pk_place *place, void *buf,
				      const __u32 n, void **hdr)
{
	if (read == PK_READ_COPIED) {
		*hdr = buf;
		return load_bytes(frame->ctx, hook, place->off, buf, n) == 0;
	}
	if (!fits(frame, read, place, n))
		return false;
	*hdr = place->at;
	return true;
}

/*
 * What a header that does not fit makes of the frame.  Read in place, in an
 * sk_buff that goes on past data_end, nothing yet: PK_L4_ELSEWHERE, and the
 * copied parse decides.  Else the frame ends inside the header, and class says
 * what that makes it (an XDP frame is whole: data_end - data is its length).
 */
static __always_inline int missing(const struct pk_frame *frame, const int hook, const int read,
				   int class)
{
	if (hook == PK_HOOK_TC && read == PK_READ_IN_PLACE &&
	    frame->data_end - frame->data < frame->length)
		return PK_L4_ELSEWHERE;
	return class;
}

static __always_inline bool is_vlan(__be16 proto)
{
	return proto == bpf_htons(PK_ETH_P_8021Q) || proto == bpf_htons(PK_ETH_P_8021AD);
}

/* A tag stack, walked with bpf_loop: where it ends and what follows. */
struct pk_vlan_walk {
	void *ctx;		/* struct xdp_md or struct __sk_buff, by the callback */
	__u32 offset;		/* of the next tag, or of what follows the stack */
	__be16 proto;		/* what comes at offset */
	__u16 cut;		/* the stack runs past the end of the frame */
};

static __always_inline long walk_vlan_tag(struct pk_vlan_walk *walk, const int hook)
{
	__be16 inner;

	if (!is_vlan(walk->proto))
		return 1;
	if (load_bytes(walk->ctx, hook, walk->offset + 2, &inner, sizeof(inner)) < 0) {
		walk->cut = 1;
		return 1;
	}
	walk->proto = inner;
	walk->offset += PK_VLAN_HLEN;
	return 0;
}

/* bpf_loop callbacks, one per hook: each may call only its program type's helpers. */
static long walk_vlan_tag_xdp(__u32 index, void *data)
{
	return walk_vlan_tag(data, PK_HOOK_XDP);
}

static long walk_vlan_tag_tc(__u32 index, void *data)
{
	return walk_vlan_tag(data, PK_HOOK_TC);
}

static __always_inline void count(__u32 slot, __u64 bytes)
{
	struct pk_counter *counter = bpf_map_lookup_elem(&counters, &slot);

	if (counter) {
		counter->packets++;
		counter->bytes += bytes;
	}
}

/* Whether the settings count this ICMP (family 4) or ICMPv6 type as a ping. */
static __always_inline bool is_ping(const struct pk_config *cfg, __u8 family, __u8 type)
{
	const __u32 *set = family == 6 ? cfg->icmp_v6 : cfg->icmp_v4;

	return (set[type >> 5] >> (type & 31)) & 1;
}

/*
 * A transport header cut short: in a fragment the rest arrives later and the
 * stack reassembles it, so judge it as a ping; otherwise it is just malformed.
 */
static __always_inline int truncated(bool fragment)
{
	return fragment ? PK_L4_SUSPECT : PK_L4_UNPARSED;
}

static __always_inline int parse_icmp(const struct pk_frame *frame, const int hook,
				      const int read, const struct pk_place *place,
				      struct pk_packet *pkt, bool first_fragment)
{
	struct pk_icmp_hdr buf, *icmp;

	if (!header_at(frame, hook, read, place, &buf, sizeof(buf), (void **)&icmp))
		return missing(frame, hook, read, truncated(first_fragment));
	pkt->icmp_type = icmp->type;
	pkt->icmp_code = icmp->code;
	pkt->icmp_id = bpf_ntohs(icmp->id);
	pkt->icmp_seq = bpf_ntohs(icmp->sequence);
	if (pkt->family == 6 && icmp->type >= PK_ICMPV6_NDP_FIRST && icmp->type <= PK_ICMPV6_NDP_LAST)
		return PK_L4_NDP;
	return PK_L4_ICMP;
}

static __always_inline int parse_ipv4(const struct pk_frame *frame, const int hook,
				      const int read, struct pk_place *place,
				      struct pk_packet *pkt)
{
	struct iphdr buf, *iph;
	__u32 hdr_len;
	__u8 version_ihl;
	__u16 frag_off;

	if (!header_at(frame, hook, read, place, &buf, sizeof(buf), (void **)&iph))
		return missing(frame, hook, read, PK_L4_UNPARSED);
	version_ihl = *(__u8 *)iph;
	hdr_len = (version_ihl & 0x0f) * 4;
	if ((version_ihl >> 4) != 4 || hdr_len < sizeof(*iph))
		return PK_L4_UNPARSED;
	if (!fits(frame, read, place, hdr_len))
		return missing(frame, hook, read, PK_L4_UNPARSED);

	pkt->family = 4;
	pkt->protocol = iph->protocol;
	__builtin_memcpy(pkt->src, &iph->saddr, 4);
	__builtin_memcpy(pkt->dst, &iph->daddr, 4);

	frag_off = bpf_ntohs(iph->frag_off);
	if (frag_off & PK_IP_OFFSET)
		return PK_L4_FRAGMENT;
	if (iph->protocol != PK_IPPROTO_ICMP)
		return PK_L4_OTHER;
	advance(read, place, hdr_len);
	return parse_icmp(frame, hook, read, place, pkt, frag_off & PK_IP_MF);
}

/* IPv6 extension headers shaped (next header, length, ...): options, routing and AH. */
static __always_inline bool is_ext_header(__u8 nexthdr)
{
	return nexthdr == PK_IPPROTO_HOPOPTS || nexthdr == PK_IPPROTO_ROUTING ||
	       nexthdr == PK_IPPROTO_DSTOPTS || nexthdr == PK_IPPROTO_AH;
}

/* An extension-header chain, walked with bpf_loop. */
struct pk_ipv6_walk {
	void *ctx;		/* struct xdp_md or struct __sk_buff, by the callback */
	__u32 offset;		/* of the header nexthdr names */
	__u32 length;		/* of the frame */
	__u8 nexthdr;
	__u8 fragmented;
	__s16 result;		/* a PK_L4_* class the walk ended with, or -1 */
};

static __always_inline long walk_ipv6_header(struct pk_ipv6_walk *walk, const int hook)
{
	__u8 hdr[4];
	__u32 len;

	if (is_ext_header(walk->nexthdr)) {
		if (load_bytes(walk->ctx, hook, walk->offset, hdr, 2) < 0)
			goto cut;
		if (walk->nexthdr == PK_IPPROTO_AH)
			len = ((__u32)hdr[1] + 2) * 4;
		else
			len = ((__u32)hdr[1] + 1) * 8;
		if (walk->offset + len > walk->length)
			goto cut;
	} else if (walk->nexthdr == PK_IPPROTO_FRAGMENT) {
		if (walk->offset + sizeof(struct pk_ipv6_frag_hdr) > walk->length ||
		    load_bytes(walk->ctx, hook, walk->offset, hdr, 4) < 0)
			goto cut;
		if (((hdr[2] << 8) | hdr[3]) & PK_IP6_OFFSET) {
			walk->result = PK_L4_FRAGMENT;
			return 1;
		}
		walk->fragmented = 1;
		len = sizeof(struct pk_ipv6_frag_hdr);
	} else {
		return 1;
	}
	walk->nexthdr = hdr[0];
	walk->offset += len;
	return 0;
cut:
	walk->result = truncated(walk->fragmented);
	return 1;
}

static long walk_ipv6_header_xdp(__u32 index, void *data)
{
	return walk_ipv6_header(data, PK_HOOK_XDP);
}

static long walk_ipv6_header_tc(__u32 index, void *data)
{
	return walk_ipv6_header(data, PK_HOOK_TC);
}

/*
 * An IPv6 header and its chain of extension headers.  In place, the first
 * PK_MAX_IPV6_EXT_HDRS are read inline and the rest walked (bpf_loop); copied,
 * the whole chain is walked: PK_MAX_IPV6_EXT_HDRS + PK_IPV6_WALK_MAX at most.
 */
static __always_inline int parse_ipv6(const struct pk_frame *frame, const int hook,
				      const int read, struct pk_place *place,
				      struct pk_packet *pkt)
{
	struct ipv6hdr buf, *ip6;
	bool fragmented = false;
	__u8 nexthdr;

	if (!header_at(frame, hook, read, place, &buf, sizeof(buf), (void **)&ip6))
		return missing(frame, hook, read, PK_L4_UNPARSED);
	if ((*(__u8 *)ip6 >> 4) != 6)
		return PK_L4_UNPARSED;

	pkt->family = 6;
	__builtin_memcpy(pkt->src, &ip6->saddr, 16);
	__builtin_memcpy(pkt->dst, &ip6->daddr, 16);
	nexthdr = ip6->nexthdr;
	advance(read, place, sizeof(*ip6));

	if (read == PK_READ_IN_PLACE) {
		for (int i = 0; i < PK_MAX_IPV6_EXT_HDRS; i++) {
			if (is_ext_header(nexthdr)) {
				struct pk_ipv6_opt_hdr *opt;
				__u32 len;

				if (!header_at(frame, hook, read, place, NULL, sizeof(*opt),
					       (void **)&opt))
					return missing(frame, hook, read, truncated(fragmented));
				if (nexthdr == PK_IPPROTO_AH)	/* in 4-byte units, less 2 */
					len = ((__u32)opt->hdrlen + 2) * 4;
				else
					len = ((__u32)opt->hdrlen + 1) * 8;
				nexthdr = opt->nexthdr;
				if (!fits(frame, read, place, len))
					return missing(frame, hook, read, truncated(fragmented));
				advance(read, place, len);
			} else if (nexthdr == PK_IPPROTO_FRAGMENT) {
				struct pk_ipv6_frag_hdr *frag;

				if (!header_at(frame, hook, read, place, NULL, sizeof(*frag),
					       (void **)&frag))
					return missing(frame, hook, read, truncated(fragmented));
				nexthdr = frag->nexthdr;
				if (frag->frag_off & bpf_htons(PK_IP6_OFFSET))
					return PK_L4_FRAGMENT;
				fragmented = true;
				advance(read, place, sizeof(*frag));
			} else {
				break;
			}
		}
	}
	if (is_ext_header(nexthdr) || nexthdr == PK_IPPROTO_FRAGMENT) {
		/* Rare: a longer chain.  The stack would follow it to its end, so must we. */
		struct pk_ipv6_walk walk = {
			.ctx = frame->ctx, .offset = offset_of(frame, read, place),
			.length = frame->length, .nexthdr = nexthdr, .fragmented = fragmented,
			.result = -1,
		};

		bpf_loop(read == PK_READ_IN_PLACE ? PK_IPV6_WALK_MAX :
			 PK_MAX_IPV6_EXT_HDRS + PK_IPV6_WALK_MAX,
			 hook == PK_HOOK_TC ? walk_ipv6_header_tc : walk_ipv6_header_xdp, &walk, 0);
		if (walk.result >= 0)
			return walk.result;
		/* Longer than the walk: unseen, so judged as a ping. */
		if (is_ext_header(walk.nexthdr) || walk.nexthdr == PK_IPPROTO_FRAGMENT)
			return PK_L4_SUSPECT;
		nexthdr = walk.nexthdr;
		fragmented = walk.fragmented;
		/* Every header walked was checked to fit: what ends the chain starts there. */
		if (!move_to(frame, read, place, walk.offset))
			return PK_L4_ELSEWHERE;
	}
	pkt->protocol = nexthdr;
	if (nexthdr != PK_IPPROTO_ICMPV6)
		return PK_L4_OTHER;
	return parse_icmp(frame, hook, read, place, pkt, fragmented);
}

static __always_inline bool is_v4_mapped(const __u8 *addr)
{
	const __u32 *words = (const __u32 *)addr;

	return words[0] == 0 && words[1] == 0 && words[2] == bpf_htonl(0x0000ffff);
}

/*
 * Best (longest-prefix) rule for an IPv4 address in network order: this CPU's copy.
 * Maps the flags call empty are not looked up.
 */
static __always_inline struct pk_rule *lookup_v4(const __u8 *addr, __u32 flags)
{
	struct pk_prefix_v4 key = { .prefixlen = 32 };
	struct pk_prefix_v4 *prefix;
	struct pk_rule *rule;

	if (flags & PK_F_EXACT_V4) {
		rule = bpf_map_lookup_elem(&rules_v4, addr);
		if (rule)
			return rule;
	}
	if (!(flags & PK_F_PREFIXES_V4))
		return NULL;
	__builtin_memcpy(key.addr, addr, 4);
	prefix = bpf_map_lookup_elem(&prefix_trie_v4, &key);
	return prefix ? bpf_map_lookup_elem(&prefixes_v4, prefix) : NULL;
}

/* Best rule for an IPv6 address; an IPv4-mapped address is judged by the IPv4 rules first. */
static __always_inline struct pk_rule *lookup_v6(const __u8 *addr, __u32 flags)
{
	struct pk_prefix_v6 key = { .prefixlen = 128 };
	struct pk_prefix_v6 *prefix;
	struct pk_rule *rule;

	if (is_v4_mapped(addr)) {
		rule = lookup_v4(addr + 12, flags);
		if (rule)
			return rule;
	} else if (flags & PK_F_EXACT_V6) {
		rule = bpf_map_lookup_elem(&rules_v6, addr);
		if (rule)
			return rule;
	}
	if (!(flags & PK_F_PREFIXES_V6))
		return NULL;
	__builtin_memcpy(key.addr, addr, 16);
	prefix = bpf_map_lookup_elem(&prefix_trie_v6, &key);
	return prefix ? bpf_map_lookup_elem(&prefixes_v6, prefix) : NULL;
}

/* The rule is this CPU's copy: a plain increment, no shared cache line. */
static __always_inline void hit(struct pk_rule *rule, __u32 action)
{
	if (rule && rule->action == action)
		rule->hits++;
}

/* Count the packet once on each distinct rule that decided it (src and dst may share one). */
static __always_inline struct pk_rule *lookup(__u8 family, const __u8 *addr, __u32 flags)
{
	return family == 4 ? lookup_v4(addr, flags) : lookup_v6(addr, flags);
}

static __always_inline void hit_rules(struct pk_rule *src_rule, struct pk_rule *dst_rule,
				      __u32 action)
{
	hit(src_rule, action);
	if (dst_rule != src_rule)
		hit(dst_rule, action);
}

static __always_inline bool has_action(const struct pk_rule *rule, __u32 action)
{
	return rule && rule->action == action;
}

/*
 * The limiter's clock: jiffies, which the verifier turns into one load, in ns.
 * A tick (1 / HZ) at a time; a limit's tolerance is at least one tick, so its
 * long-run rate holds exactly.
 */
static __always_inline __u64 limiter_now(const struct pk_config *cfg)
{
	return bpf_jiffies64() * cfg->ns_per_tick;
}

/*
 * Take a ping's worth from a bucket (struct pk_limit): true if it passes.  A
 * bucket over its rate is only read, so CPUs flooding one peer share its cache
 * line; a pass moves it on with one compare-and-swap, retried when another CPU
 * moved it first.  Past PK_BUCKET_TRIES lost races, each another CPU's pass,
 * the ping is dropped.
 */
static __always_inline bool take(__u64 *tat, const struct pk_limit *limit, __u64 now)
{
#pragma clang loop unroll(disable)
	for (int i = 0; i < PK_BUCKET_TRIES; i++) {
		__u64 old = *(volatile __u64 *)tat;
		__u64 base = old > now ? old : now;

		if (base - now > limit->tolerance_ns)
			return false;
		if (__sync_val_compare_and_swap(tat, old, base + limit->interval_ns) == old)
			return true;
	}
	return false;
}

static __always_inline bool take_total(const struct pk_config *cfg, __u64 now)
{
	__u32 zero = 0;
	__u64 *tat;

	if (!(cfg->flags & PK_F_LIMIT_TOTAL))
		return true;
	tat = bpf_map_lookup_elem(&rate_total, &zero);
	return tat && take(tat, &cfg->total, now);
}

/* A limited ping from (or, at tc egress, to) peer: its bucket's verdict. */
static __always_inline __u32 limit_ping(const struct pk_config *cfg, __u32 index,
					 __u8 family, const __u8 *peer)
{
	const struct pk_limit *limit;
	struct pk_bucket_key key;
	__u64 *tat, now, first;

	limit = index ? bpf_map_lookup_elem(&limits, &index) : &cfg->limit;
	if (!limit || !limit->interval_ns)
		return PK_REASON_PASS_RATE;
	__builtin_memset(&key, 0, sizeof(key));
	key.limit = index;
	if (family == 4) {
		key.family = 4;
		__builtin_memcpy(key.addr, peer, 4);
	} else if (is_v4_mapped(peer)) {
		key.family = 4;
		__builtin_memcpy(key.addr, peer + 12, 4);
	} else {
		const __u32 *mask = (const __u32 *)cfg->limit_mask6;
		const __u32 *from = (const __u32 *)peer;
		__u32 *to = (__u32 *)key.addr;

		key.family = 6;
		to[0] = from[0] & mask[0];
		to[1] = from[1] & mask[1];
		to[2] = from[2] & mask[2];
		to[3] = from[3] & mask[3];
	}
	now = limiter_now(cfg);
	tat = bpf_map_lookup_elem(&buckets, &key);
	if (!tat) {
		/* A new peer: the total first, so a flood of new sources makes no more buckets. */
		if (!take_total(cfg, now))
			return PK_REASON_DROP_RATE_TOTAL;
		first = now + limit->interval_ns;	/* the first ping takes its share */
		if (bpf_map_update_elem(&buckets, &key, &first, BPF_NOEXIST) == 0) {
			count(PK_COUNTER_BUCKETS_NEW, 0);
			return PK_REASON_PASS_RATE;
		}
		tat = bpf_map_lookup_elem(&buckets, &key);	/* another CPU made it meanwhile */
		if (!tat) {
			count(PK_COUNTER_BUCKETS_FAILED, 0);
			return PK_REASON_PASS_RATE;	/* the total admitted it */
		}
		return take(tat, limit, now) ? PK_REASON_PASS_RATE : PK_REASON_DROP_RATE;
	}
	if (!take(tat, limit, now))
		return PK_REASON_DROP_RATE;
	return take_total(cfg, now) ? PK_REASON_PASS_RATE : PK_REASON_DROP_RATE_TOTAL;
}

static __always_inline bool dropped(__u32 reason)
{
	return reason == PK_REASON_DROP_BLOCK || reason == PK_REASON_DROP_DEFAULT ||
	       reason == PK_REASON_DROP_RATE || reason == PK_REASON_DROP_RATE_TOTAL;
}

/* Reason for a packet whose IP header parsed; the verdict follows from it. */
static __always_inline __u32 pass_reason(int l4_class)
{
	if (l4_class == PK_L4_FRAGMENT)
		return PK_REASON_PASS_FRAGMENT;
	if (l4_class == PK_L4_UNPARSED)
		return PK_REASON_PASS_UNPARSED;
	return PK_REASON_PASS_NOT_PING;
}

/*
 * Per address the most specific rule; then block on either address, limit on
 * either (the peer's first), allow on either, and last the default.
 */
static __always_inline __u32 judge(const struct pk_config *cfg, int l4_class,
				   struct pk_packet *pkt, const int direction)
{
	bool ping = l4_class == PK_L4_PING || l4_class == PK_L4_SUSPECT;
	struct pk_rule *src_rule, *dst_rule, *limited, *other;
	const __u8 *peer = direction == PK_DIRECTION_OUT ? pkt->dst : pkt->src;
	__u32 index = 0;

	/* Without neighbour discovery IPv6 stops working: no rule or option drops it. */
	if (l4_class == PK_L4_NDP)
		return PK_REASON_PASS_NOT_PING;

	/* Rules only matter to a non-ping when block rules cover every protocol. */
	if (!ping && !(cfg->flags & PK_F_ALL_PROTOCOLS))
		return pass_reason(l4_class);

	src_rule = lookup(pkt->family, pkt->src, cfg->flags);
	/* A blocked source decides alone: the destination need not be looked up. */
	if (has_action(src_rule, PK_RULE_BLOCK)) {
		hit(src_rule, PK_RULE_BLOCK);
		return PK_REASON_DROP_BLOCK;
	}
	dst_rule = lookup(pkt->family, pkt->dst, cfg->flags);
	if (has_action(dst_rule, PK_RULE_BLOCK)) {
		hit(dst_rule, PK_RULE_BLOCK);
		return PK_REASON_DROP_BLOCK;
	}
	if (!ping)
		return pass_reason(l4_class);
	limited = direction == PK_DIRECTION_OUT ? dst_rule : src_rule;
	other = direction == PK_DIRECTION_OUT ? src_rule : dst_rule;
	if (!has_action(limited, PK_RULE_LIMIT))
		limited = has_action(other, PK_RULE_LIMIT) ? other : NULL;
	if (limited) {
		limited->hits++;
		index = limited->limit;
		goto limit;
	}
	if (has_action(src_rule, PK_RULE_ALLOW) || has_action(dst_rule, PK_RULE_ALLOW)) {
		hit_rules(src_rule, dst_rule, PK_RULE_ALLOW);
		return PK_REASON_PASS_ALLOW;
	}
	if (cfg->default_action == PK_ACTION_DROP)
		return PK_REASON_DROP_DEFAULT;
	if (cfg->default_action != PK_ACTION_LIMIT)
		return PK_REASON_PASS_DEFAULT;
limit:
	return limit_ping(cfg, index, pkt->family, peer);
}

static __always_inline bool wants_event(const struct pk_config *cfg, int l4_class, __u32 verdict)
{
	switch (cfg->events) {
	case PK_EVENTS_DROPS:
		return verdict == XDP_DROP;
	case PK_EVENTS_PINGS:
		return l4_class == PK_L4_PING || l4_class == PK_L4_SUSPECT;
	case PK_EVENTS_ALL:
		return true;
	default:
		return false;
	}
}

/*
 * Per-CPU budget of event_rate events per second; true when one may be sent.
 * The one-second window runs on jiffies, which the verifier turns into one load:
 * a flood over budget pays no clock call per packet.
 */
static __always_inline bool take_event_budget(const struct pk_config *cfg)
{
	struct pk_event_budget *budget;
	__u32 zero = 0;
	__u64 now;

	if (!cfg->event_rate)
		return true;
	budget = bpf_map_lookup_elem(&event_budget, &zero);
	if (!budget)
		return false;
	now = bpf_jiffies64();
	if (now - budget->window_start >= cfg->event_window) {
		budget->window_start = now;
		budget->sent = 0;
	}
	if (budget->sent >= cfg->event_rate)
		return false;
	budget->sent++;
	return true;
}

static __always_inline void send_event(void *ctx, const int hook, const int direction,
				       const struct pk_config *cfg, const struct pk_packet *pkt,
				       __u32 reason, __u32 verdict, __u32 length)
{
	struct pk_event *event;

	if (!take_event_budget(cfg)) {
		count(PK_COUNTER_EVENTS_SUPPRESSED, 0);
		return;
	}
	event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
	if (!event) {
		count(PK_COUNTER_EVENTS_LOST, 0);
		return;
	}
	event->timestamp_ns = bpf_ktime_get_ns();
	if (hook == PK_HOOK_TC)
		event->ifindex = ((struct __sk_buff *)ctx)->ifindex;
	else
		event->ifindex = ((struct xdp_md *)ctx)->ingress_ifindex;
	event->length = length;
	/* The parse wrote 4 bytes of each address for IPv4, 16 for IPv6, none else. */
	if (pkt->family == 6) {
		__builtin_memcpy(event->src, pkt->src, 16);
		__builtin_memcpy(event->dst, pkt->dst, 16);
	} else {
		__builtin_memset(event->src, 0, sizeof(event->src));
		__builtin_memset(event->dst, 0, sizeof(event->dst));
		if (pkt->family == 4) {
			__builtin_memcpy(event->src, pkt->src, 4);
			__builtin_memcpy(event->dst, pkt->dst, 4);
		}
	}
	event->verdict = verdict;
	event->reason = reason;
	event->family = pkt->family;
	event->protocol = pkt->protocol;
	event->icmp_type = pkt->icmp_type;
	event->icmp_code = pkt->icmp_code;
	event->icmp_id = pkt->icmp_id;
	event->icmp_seq = pkt->icmp_seq;
	event->hook = hook;
	event->direction = direction;
	__builtin_memset(event->pad, 0, sizeof(event->pad));
	bpf_ringbuf_submit(event, 0);
	count(PK_COUNTER_EVENTS_SENT, 0);
}

static __always_inline void add_timing(__u32 verdict, __u64 start)
{
	__u32 slot = verdict == XDP_DROP ? PK_TIMING_DROP : PK_TIMING_PASS;
	struct pk_timing *t = bpf_map_lookup_elem(&timing, &slot);

	if (t) {
		t->count++;
		t->total_ns += bpf_ktime_get_ns() - start;
	}
}

/*
 * Parse a frame from its Ethernet header, reading it as read says: what it is
 * (a PK_L4_* class) and, in pkt, what it carries.  In place, the first
 * PK_MAX_VLAN_TAGS tags are read inline and the rest walked (bpf_loop);
 * copied, the whole stack is walked: PK_MAX_VLAN_TAGS + PK_VLAN_WALK_MAX at
 * most.
 */
static __always_inline int parse_frame(const struct pk_frame *frame, const int hook,
				       const int read, struct pk_packet *pkt)
{
	struct pk_place place = { .at = frame->data, .off = 0 };
	struct ethhdr buf, *eth;
	__be16 proto;

	if (!header_at(frame, hook, read, &place, &buf, sizeof(buf), (void **)&eth))
		return missing(frame, hook, read, PK_L4_UNPARSED);
	/*
	 * In tc, a tag the driver or the stack moved into the sk_buff's metadata
	 * (vlan_present) is no longer in the frame: h_proto already names what
	 * it carried, which is judged as any untagged packet.
	 */
	proto = eth->h_proto;
	advance(read, &place, sizeof(*eth));
	if (read == PK_READ_IN_PLACE) {
		for (int i = 0; i < PK_MAX_VLAN_TAGS && is_vlan(proto); i++) {
			struct pk_vlan_hdr *vlan;

			if (!header_at(frame, hook, read, &place, NULL, sizeof(*vlan),
				       (void **)&vlan))
				return missing(frame, hook, read, PK_L4_UNPARSED);
			proto = vlan->encapsulated_proto;
			advance(read, &place, sizeof(*vlan));
		}
	}
	if (is_vlan(proto)) {
		/* Rare: a deeper stack (e.g. stacked priority tags).  Walk it to its end. */
		struct pk_vlan_walk walk = {
			.ctx = frame->ctx, .offset = offset_of(frame, read, &place), .proto = proto,
		};

		bpf_loop(read == PK_READ_IN_PLACE ? PK_VLAN_WALK_MAX :
			 PK_MAX_VLAN_TAGS + PK_VLAN_WALK_MAX,
			 hook == PK_HOOK_TC ? walk_vlan_tag_tc : walk_vlan_tag_xdp, &walk, 0);
		if (is_vlan(walk.proto) || walk.cut)
			return PK_L4_UNPARSED;	/* longer than the walk, or cut short: malformed */
		proto = walk.proto;
		if (!move_to(frame, read, &place, walk.offset))
			return PK_L4_ELSEWHERE;
	}

	if (proto == bpf_htons(PK_ETH_P_IP))
		return parse_ipv4(frame, hook, read, &place, pkt);
	if (proto == bpf_htons(PK_ETH_P_IPV6))
		return parse_ipv6(frame, hook, read, &place, pkt);
	return PK_L4_OTHER;
}

static __always_inline void clear_packet(struct pk_packet *pkt)
{
	pkt->family = 0;
	pkt->protocol = 0;
	pkt->icmp_type = 0;
	pkt->icmp_code = 0;
	pkt->icmp_id = 0;
	pkt->icmp_seq = 0;
}

/*
 * The copied parse (PK_READ_COPIED), one for each hook: global functions, so
 * the verifier checks each once, apart from the in-place parse of its caller.
 * pkt is the caller's, zeroed; it is never NULL.
 */
__attribute__((noinline)) int pk_parse_copied_xdp(struct xdp_md *ctx, struct pk_packet *pkt)
{
	struct pk_frame frame = { .ctx = ctx, .length = ctx->data_end - ctx->data };

	if (!pkt)
		return PK_L4_UNPARSED;
	return parse_frame(&frame, PK_HOOK_XDP, PK_READ_COPIED, pkt);
}

__attribute__((noinline)) int pk_parse_copied_tc(struct __sk_buff *skb, struct pk_packet *pkt)
{
	struct pk_frame frame = { .ctx = skb, .length = skb->len };

	if (!pkt)
		return PK_L4_UNPARSED;
	return parse_frame(&frame, PK_HOOK_TC, PK_READ_COPIED, pkt);
}

/*
 * The data path: parse -> classify -> verdict -> count -> (maybe) event.
 * Returns XDP_DROP or XDP_PASS, which the tc entry points translate.
 */
static __always_inline __u32 pk_process(void *ctx, const int hook, const int direction)
{
	struct pk_frame frame = { .ctx = ctx };
	struct pk_packet pkt;	/* addresses: only what the parse wrote is read */
	struct pk_config *cfg;
	__u32 zero = 0, reason, verdict;
	__u64 start = 0;
	int l4_class;

	if (hook == PK_HOOK_TC) {
		struct __sk_buff *skb = ctx;

		frame.data = (void *)(long)skb->data;
		frame.data_end = (void *)(long)skb->data_end;
		frame.length = skb->len;
	} else {
		struct xdp_md *xdp = ctx;

		frame.data = (void *)(long)xdp->data;
		frame.data_end = (void *)(long)xdp->data_end;
		frame.length = frame.data_end - frame.data;
	}
	clear_packet(&pkt);
	cfg = bpf_map_lookup_elem(&settings, &zero);
	if (!cfg)
		return XDP_PASS;
	if (cfg->flags & PK_F_TIMING)
		start = bpf_ktime_get_ns();

	l4_class = parse_frame(&frame, hook, PK_READ_IN_PLACE, &pkt);
	if (l4_class == PK_L4_ELSEWHERE) {
		/* Rare: kilobytes of tags or headers, or headers in an sk_buff's pages. */
		__builtin_memset(&pkt, 0, sizeof(pkt));	/* all of it: the callee may read it */
		if (hook == PK_HOOK_TC)
			l4_class = pk_parse_copied_tc(ctx, &pkt);
		else
			l4_class = pk_parse_copied_xdp(ctx, &pkt);
	}

	if (l4_class == PK_L4_ICMP)
		l4_class = is_ping(cfg, pkt.family, pkt.icmp_type) ? PK_L4_PING : PK_L4_OTHER;
	if (pkt.family)
		reason = judge(cfg, l4_class, &pkt, direction);
	else if (l4_class == PK_L4_OTHER)
		reason = PK_REASON_PASS_NOT_PING;
	else
		reason = PK_REASON_PASS_UNPARSED;
	verdict = dropped(reason) ? XDP_DROP : XDP_PASS;

	if (cfg->flags & PK_F_TIMING)
		add_timing(verdict, start);
	count(reason, frame.length);
	if (wants_event(cfg, l4_class, verdict))
		send_event(ctx, hook, direction, cfg, &pkt, reason, verdict, frame.length);
	return verdict;
}

SEC("xdp")
int pingkiller(struct xdp_md *ctx)
{
	return pk_process(ctx, PK_HOOK_XDP, PK_DIRECTION_IN);
}

/*
 * tc: drop with TC_ACT_SHOT; pass with TCX_NEXT (= TC_ACT_UNSPEC), not
 * TC_ACT_OK, so the programs attached after this one still run.
 */
static __always_inline int tc_verdict(__u32 verdict)
{
	return verdict == XDP_DROP ? TC_ACT_SHOT : TCX_NEXT;
}

SEC("tc")
int pingkill_tc_in(struct __sk_buff *skb)
{
	return tc_verdict(pk_process(skb, PK_HOOK_TC, PK_DIRECTION_IN));
}

SEC("tc")
int pingkill_tc_out(struct __sk_buff *skb)
{
	return tc_verdict(pk_process(skb, PK_HOOK_TC, PK_DIRECTION_OUT));
}
