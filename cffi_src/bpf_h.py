"""<bpf/bpf.h>: libbpf's thin wrappers of the bpf(2) commands."""

INCLUDES = """
#include <bpf/bpf.h>
"""

CDEF = """
int bpf_map_lookup_elem(int fd, const void *key, void *value);
int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags);
int bpf_map_delete_elem(int fd, const void *key);
int bpf_map_get_next_key(int fd, const void *key, void *next_key);

struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; ...; };
int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
                         __u32 *count, const struct bpf_map_batch_opts *opts);
int bpf_map_update_batch(int fd, const void *keys, const void *values, __u32 *count,
                         const struct bpf_map_batch_opts *opts);
int bpf_map_delete_batch(int fd, const void *keys, __u32 *count,
                         const struct bpf_map_batch_opts *opts);

int bpf_obj_pin(int fd, const char *pathname);
struct bpf_obj_get_opts { size_t sz; __u32 file_flags; ...; };
int bpf_obj_get_opts(const char *pathname, const struct bpf_obj_get_opts *opts);
int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len);
int bpf_prog_get_fd_by_id(__u32 id);
int bpf_map_get_fd_by_id(__u32 id);
int bpf_link_get_fd_by_id(__u32 id);
struct bpf_map_create_opts;
int bpf_map_create(enum bpf_map_type map_type, const char *map_name, __u32 key_size,
                   __u32 value_size, __u32 max_entries,
                   const struct bpf_map_create_opts *opts);

struct bpf_link_create_opts { size_t sz; __u32 flags; ...; };
int bpf_link_create(int prog_fd, int target_fd, enum bpf_attach_type attach_type,
                    const struct bpf_link_create_opts *opts);
struct bpf_link_update_opts { size_t sz; __u32 flags; __u32 old_prog_fd; ...; };
int bpf_link_update(int link_fd, int new_prog_fd, const struct bpf_link_update_opts *opts);
int bpf_link_detach(int link_fd);
int bpf_raw_tracepoint_open(const char *name, int prog_fd);
struct bpf_prog_query_opts { size_t sz; __u32 query_flags; __u32 attach_flags; __u32 *prog_ids;
                             __u32 prog_cnt; ...; };
int bpf_prog_query_opts(int target_fd, enum bpf_attach_type type,
                        struct bpf_prog_query_opts *opts);

struct bpf_xdp_query_opts {
    size_t sz; __u32 prog_id; __u32 drv_prog_id; __u32 hw_prog_id; __u32 skb_prog_id;
    __u8 attach_mode; ...;
};
int bpf_xdp_query(int ifindex, int flags, struct bpf_xdp_query_opts *opts);

struct bpf_test_run_opts {
    size_t sz; const void *data_in; void *data_out; __u32 data_size_in; __u32 data_size_out;
    const void *ctx_in; void *ctx_out; __u32 ctx_size_in; __u32 ctx_size_out;
    __u32 retval; int repeat; __u32 duration; __u32 flags; __u32 cpu; __u32 batch_size; ...;
};
int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts);

int bpf_enable_stats(enum bpf_stats_type type);
"""
