// SPDX-License-Identifier: GPL-2.0
/*
 * The workshop's "hello world", through a ring buffer instead of bpf_printk:
 * every exec sends {pid, comm, "Hello World!"} to user space.
 */
#include "uapi.h"
#include <bpf/bpf_helpers.h>

#define HELLO_COMM_LEN 16	/* the kernel's TASK_COMM_LEN */
#define HELLO_MESSAGE_LEN 16

struct hello_event {
	__u32 pid;
	char comm[HELLO_COMM_LEN];
	char message[HELLO_MESSAGE_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} hello_events SEC(".maps");

SEC("raw_tracepoint/sched_process_exec")
int hello(struct bpf_raw_tracepoint_args *ctx)
{
	char message[HELLO_MESSAGE_LEN] = "Hello World!";
	struct hello_event *event;

	event = bpf_ringbuf_reserve(&hello_events, sizeof(*event), 0);
	if (!event)
		return 0;
	event->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(event->comm, sizeof(event->comm));
	__builtin_memcpy(event->message, message, sizeof(message));
	bpf_ringbuf_submit(event, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
