"""bcc's Python ring-buffer consumer of a program equivalent to pingkiller's event path.

Run with Debian's /usr/bin/python3 (python3-bpfcc). Loads the program, prints its
program id, then counts events with open_ring_buffer/ring_buffer_poll; the producer
runs the program by id with BPF_PROG_RUN. Prints one JSON line at the end.
usage: bcc_consumer.py EXPECTED IDLE_MS
"""

import ctypes
import json
import sys
import time

from bcc import BPF

PROGRAM = r"""
#include <uapi/linux/bpf.h>
struct pk_event {
    u64 timestamp_ns; u32 ifindex; u32 length; u8 src[16]; u8 dst[16];
    u8 verdict, reason, family, protocol, icmp_type, icmp_code;
    u16 icmp_id, icmp_seq, pad;
};
BPF_RINGBUF_OUTPUT(events, 256);
BPF_ARRAY(sent, u64, 2);
int bcc_flood(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct pk_event *ev = events.ringbuf_reserve(sizeof(struct pk_event));
    int slot = 0;
    if (!ev) {
        slot = 1;
    } else {
        __builtin_memset(ev, 0, sizeof(*ev));
        ev->timestamp_ns = bpf_ktime_get_ns();
        ev->length = data_end - data;
        ev->verdict = XDP_DROP;
        ev->family = 4;
        ev->protocol = 1;
        events.ringbuf_submit(ev, 0);
    }
    u64 *count = sent.lookup(&slot);
    if (count)
        __sync_fetch_and_add(count, 1);
    return XDP_DROP;
}
"""


def main():
    expected, idle_ms = int(sys.argv[1]), int(sys.argv[2])
    bpf = BPF(text=PROGRAM)
    fn = bpf.load_func("bcc_flood", BPF.XDP)
    received = [0, 0.0, 0.0]

    events = bpf["events"]

    def on_event(ctx, data, size):
        # Deliver the event as bcc users do: a ctypes struct with fields (cf. pingkiller's Event).
        events.event(data)
        if not received[0]:
            received[1] = time.monotonic()
        received[0] += 1

    events.open_ring_buffer(on_event)
    info = ctypes.create_string_buffer(256)
    size = ctypes.c_uint(256)
    libc_bpf = ctypes.CDLL("libbpf.so.1")
    libc_bpf.bpf_obj_get_info_by_fd(fn.fd, info, ctypes.byref(size))
    prog_id = int.from_bytes(info.raw[4:8], "little")
    print(json.dumps({"prog_id": prog_id}), flush=True)
    idle_since = time.monotonic()
    while received[0] < expected:
        before = received[0]
        bpf.ring_buffer_poll(100)
        now = time.monotonic()
        if received[0] != before:
            received[2] = idle_since = now
        elif (now - idle_since) * 1000 > idle_ms:
            break
    sent = bpf["sent"]
    print(json.dumps({
        "received": received[0], "seconds": received[2] - received[1],
        "sent": sent[ctypes.c_int(0)].value, "lost": sent[ctypes.c_int(1)].value,
    }), flush=True)


if __name__ == "__main__":
    main()
