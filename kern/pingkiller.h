/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ABI shared by the XDP and tc programs (pingkiller.bpf.c) and user space
 * (build.py feeds this file to cffi's cdef).  Keep it to plain fixed-size
 * types, integer #defines and enums: build.py drops every other preprocessor
 * line before handing the text to cffi.
 *
 * Every struct here is laid out by hand: each field sits at its natural
 * alignment and every byte, padding included, is a named field (pad*), so the
 * compiler adds none of its own and a record the program writes has no byte
 * it did not set.  pingkiller.bpf.c asserts the sizes and offsets at compile
 * time; pingkiller/abi.py checks every field's offset against cffi at import.
 */
#ifndef PINGKILLER_H
#define PINGKILLER_H

#define PK_MAX_EXACT_RULES 1048576
#define PK_MAX_PREFIX_RULES 262144
#define PK_RINGBUF_BYTES 1048576
#define PK_MAX_VLAN_TAGS 2
#define PK_MAX_IPV6_EXT_HDRS 8
#define PK_DEFAULT_EVENT_RATE 1000
/* Rate classes of limit rules (index 0 unused: the default action's rate). */
#define PK_MAX_LIMITS 1024
/* The buckets map's size unless user space sets another before load. */
#define PK_DEFAULT_BUCKETS 65536
/* Compare-and-swap attempts on a bucket before a ping is dropped. */
#define PK_BUCKET_TRIES 4

/* Why a packet got its verdict; one packets/bytes counter each. */
enum pk_reason {
	PK_REASON_PASS_NOT_PING = 0,	/* parsed, not a ping, no block rule for it */
	PK_REASON_PASS_ALLOW = 1,	/* ping passed by an allow rule */
	PK_REASON_PASS_DEFAULT = 2,	/* ping passed by the default action */
	PK_REASON_DROP_BLOCK = 3,	/* dropped by a block rule */
	PK_REASON_DROP_DEFAULT = 4,	/* ping dropped by the default action */
	PK_REASON_PASS_FRAGMENT = 5,	/* non-first fragment: no L4 header to judge */
	PK_REASON_PASS_UNPARSED = 6,	/* malformed or not understood */
	PK_REASON_DROP_RATE = 7,	/* a limited ping over its bucket's rate */
	PK_REASON_DROP_RATE_TOTAL = 8,	/* a limited ping over the total rate of all */
	PK_REASON_PASS_RATE = 9,	/* a limited ping within its rate */
	PK_REASON_COUNT = 10,
};

/* Slots of the per-CPU counters map: the reasons, then the event counters. */
enum pk_counter_slot {
	PK_COUNTER_EVENTS_SENT = PK_REASON_COUNT,
	PK_COUNTER_EVENTS_SUPPRESSED,		/* over the per-CPU rate limit */
	PK_COUNTER_EVENTS_LOST,			/* ring buffer full */
	PK_COUNTER_BUCKETS_NEW,			/* buckets made (a new peer, or one evicted) */
	PK_COUNTER_BUCKETS_FAILED,		/* none could be made: the total alone judged */
	PK_COUNTER_COUNT,
};

enum pk_action {
	PK_ACTION_PASS = 0,
	PK_ACTION_DROP = 1,
	PK_ACTION_LIMIT = 2,	/* struct pk_config.limit, per peer */
};

enum pk_rule_action {
	PK_RULE_ALLOW = 1,
	PK_RULE_BLOCK = 2,
	PK_RULE_LIMIT = 3,	/* struct pk_rule.limit names the rate, per peer */
};

/*
 * Which ICMP messages count as a ping: the shorthand struct pk_config.icmp_v4
 * and icmp_v6 were made from, for user space.  The program reads only those.
 */
enum pk_icmp_set {
	PK_ICMP_ECHO = 0,		/* echo request and reply */
	PK_ICMP_ECHO_REQUEST = 1,	/* echo request only */
	PK_ICMP_ALL = 2,		/* every type but ICMPv6 neighbour discovery */
	PK_ICMP_LIST = 3,		/* another set of types */
};

enum pk_events_mode {
	PK_EVENTS_OFF = 0,
	PK_EVENTS_DROPS = 1,	/* every dropped packet */
	PK_EVENTS_PINGS = 2,	/* every ping, whatever its verdict */
	PK_EVENTS_ALL = 3,	/* every packet */
};

enum pk_config_flags {
	PK_F_ALL_PROTOCOLS = 1,	/* block rules drop every protocol */
	PK_F_TIMING = 2,	/* measure processing time per verdict */
	PK_F_PREFIXES_V4 = 4,	/* prefixes_v4 holds rules: look them up */
	PK_F_PREFIXES_V6 = 8,	/* prefixes_v6 holds rules: look them up */
	PK_F_EXACT_V4 = 16,	/* rules_v4 holds rules: look them up */
	PK_F_EXACT_V6 = 32,	/* rules_v6 holds rules: look them up */
	PK_F_LIMIT_TOTAL = 64,	/* limited pings together are held to struct pk_config.total */
};

enum pk_timing_slot {
	PK_TIMING_DROP = 0,
	PK_TIMING_PASS = 1,
	PK_TIMING_COUNT = 2,
};

/* Which entry point judged a packet (struct pk_event.hook). */
enum pk_hook {
	PK_HOOK_XDP = 0,	/* SEC("xdp") pingkiller: received frames, at the driver */
	PK_HOOK_TC = 1,		/* SEC("tc") pingkill_tc_in, _out: sk_buffs, either way */
};

/* Which way the packet went through the interface (struct pk_event.direction). */
enum pk_direction {
	PK_DIRECTION_IN = 0,	/* received: XDP, tc ingress */
	PK_DIRECTION_OUT = 1,	/* sent: tc egress */
};

/*
 * A rate, as the generic cell rate algorithm keeps it: a bucket is one __u64,
 * the time (struct pk_config.ns_per_tick's clock) at which it is full again.
 * A ping passes when that time is at most tolerance_ns ahead of now, and moves
 * it interval_ns on: burst pings at once, then one per interval.
 */
struct pk_limit {
	__u64 interval_ns;	/* 1 s / rate: what one ping costs; 0: no limit, pass */
	__u64 tolerance_ns;	/* (burst - 1) * interval_ns, at least a tick */
	__u32 burst;		/* as asked: for user space */
	__u32 count;		/* the rate: count per unit (count * interval_ns): for user space */
};

/* The single entry of the "settings" array map. */
struct pk_config {
	__u32 default_action;	/* enum pk_action, for pings only */
	__u32 icmp_set;		/* enum pk_icmp_set: what icmp_v4/_v6 were made from */
	__u32 events;		/* enum pk_events_mode */
	__u32 event_rate;	/* events per second per CPU; 0 = unlimited */
	__u32 flags;		/* enum pk_config_flags */
	__u32 event_window;	/* length of the event_rate window in jiffies (HZ) */
	__u32 icmp_v4[8];	/* bit t % 32 of word t / 32: ICMP type t is a ping */
	__u32 icmp_v6[8];	/* the same for ICMPv6 (neighbour discovery never is) */
	__u8 limit_mask6[16];	/* an IPv6 peer's bucket is its address & this */
	__u32 ns_per_tick;	/* 1e9 / HZ: the limiter's clock runs on jiffies */
	__u32 limit_prefix6;	/* the prefix length limit_mask6 holds: for user space */
	struct pk_limit limit;	/* PK_ACTION_LIMIT's rate */
	struct pk_limit total;	/* PK_F_LIMIT_TOTAL's rate */
};

/*
 * Value of every rule map (per-CPU hashes keyed by address or prefix): each CPU
 * has its own copy, so a flood counts its hits without sharing a cache line.
 * User space writes the same action to every CPU's copy and sums the hits.
 */
struct pk_rule {
	__u32 action;		/* enum pk_rule_action */
	__u32 limit;		/* PK_RULE_LIMIT: its rate's index in limits; else 0 */
	__u64 hits;		/* packets whose verdict this rule decided on this CPU;
				 * a blocked source decides alone */
};

/*
 * Key of prefixes_v4/_v6 and of the LPM tries prefix_trie_v4/_v6.  A trie only
 * finds the longest prefix that holds an address: the value of each entry is its
 * own key, which then finds the prefix's rule.
 */
struct pk_prefix_v4 {
	__u32 prefixlen;
	__u8 addr[4];
};

struct pk_prefix_v6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/*
 * Key of the buckets map: one bucket per rate and peer.  The peer is the
 * source (XDP, tc ingress) or the destination (tc egress); IPv4 and
 * IPv4-mapped IPv6 addresses in addr[0..3], IPv6 ones masked by limit_mask6.
 */
struct pk_bucket_key {
	__u32 limit;		/* 0: the default action's rate; else a rule's index */
	__u8 family;		/* 4 or 6 */
	__u8 pad[3];		/* zero */
	__u8 addr[16];		/* zero past the address */
};

struct pk_counter {
	__u64 packets;
	__u64 bytes;
};

struct pk_timing {
	__u64 count;
	__u64 total_ns;
};

/* Per-CPU state of the event rate limit. */
struct pk_event_budget {
	__u64 window_start;	/* jiffies */
	__u64 sent;		/* events sent in the window */
};

/*
 * One ring-buffer record. Addresses in network order; IPv4 in the first 4 bytes.
 * ifindex: the receiving interface for XDP (ingress_ifindex), the sk_buff's
 * interface for tc (ifindex: the one it arrives on or leaves by).  length: the
 * frame (XDP) or the whole sk_buff from its Ethernet header (tc, skb->len).
 */
struct pk_event {
	__u64 timestamp_ns;	/* bpf_ktime_get_ns() */
	__u32 ifindex;
	__u32 length;		/* frame length in bytes */
	__u8 src[16];
	__u8 dst[16];
	__u8 verdict;		/* XDP_DROP (1) or XDP_PASS (2), whatever the hook
				 * (a tc program returns TC_ACT_SHOT / TCX_NEXT) */
	__u8 reason;		/* enum pk_reason */
	__u8 family;		/* 4, 6, or 0 when unparsed */
	__u8 protocol;		/* IP protocol of the L4 header, 0 when none */
	__u8 icmp_type;
	__u8 icmp_code;
	__u16 icmp_id;		/* host order */
	__u16 icmp_seq;		/* host order */
	__u8 hook;		/* enum pk_hook */
	__u8 direction;		/* enum pk_direction */
	__u8 pad[4];		/* zero: the record is 8-aligned */
};

#endif /* PINGKILLER_H */
