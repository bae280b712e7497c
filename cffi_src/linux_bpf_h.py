"""<linux/bpf.h> and <linux/if_link.h>: the kernel's types, enums and flags the binding uses."""

INCLUDES = """
#include <linux/bpf.h>
#include <linux/if_link.h>
"""

# <linux/types.h>'s fixed-size integers, as both extensions' cdefs need them.
INTEGER_TYPES = """
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
"""

CDEF = INTEGER_TYPES + """
enum bpf_map_type {
    BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_HASH,
    BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH,
    BPF_MAP_TYPE_LPM_TRIE, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE, BPF_MAP_TYPE_RINGBUF, ...
};
enum bpf_prog_type { BPF_PROG_TYPE_XDP, BPF_PROG_TYPE_SCHED_CLS, ... };
enum bpf_link_type { BPF_LINK_TYPE_XDP, ... };
enum bpf_attach_type { BPF_XDP, ... };
enum bpf_stats_type { BPF_STATS_RUN_TIME, ... };
enum { XDP_ATTACHED_NONE, XDP_ATTACHED_DRV, XDP_ATTACHED_SKB, XDP_ATTACHED_HW,
       XDP_ATTACHED_MULTI, ... };
enum { XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT, ... };

#define XDP_FLAGS_SKB_MODE ...
#define XDP_FLAGS_DRV_MODE ...
#define XDP_FLAGS_HW_MODE ...
#define BPF_F_REPLACE ...
#define BPF_ANY ...
#define BPF_NOEXIST ...
#define BPF_EXIST ...
#define BPF_F_TEST_XDP_LIVE_FRAMES ...
#define BPF_F_RDONLY ...

struct bpf_map_info {
    __u32 type; __u32 id; __u32 key_size; __u32 value_size; __u32 max_entries;
    __u32 map_flags; char name[16]; ...;
};
struct bpf_prog_info {
    __u32 type; __u32 id; unsigned char tag[8]; char name[16];
    __u64 run_time_ns; __u64 run_cnt; ...;
};
"""
