"""A generic, typed binding to libbpf: objects, programs, maps, XDP links, ring buffers.

This layer knows nothing about pings; it can load and drive any BPF object.
"""

from pingkiller.bpf.errors import BpfError, NotSupportedError, VerifierError
from pingkiller.bpf.link import Link, LinkInfo, XdpLink, XdpMode, XdpState, xdp_query
from pingkiller.bpf.maps import (
    MAP_TYPE_ARRAY,
    UPDATE_ANY,
    UPDATE_EXIST,
    UPDATE_NOEXIST,
    BatchError,
    Map,
    MapInfo,
)
from pingkiller.bpf.object import Object
from pingkiller.bpf.program import Program, ProgramInfo, enable_run_time_stats
from pingkiller.bpf.ringbuf import RecordBatch, RingBuffer
from pingkiller.bpf.testrun import (
    LIVE_FRAMES,
    XDP_ABORTED,
    XDP_DROP,
    XDP_PASS,
    XDP_REDIRECT,
    XDP_TX,
    ProgramRun,
)

__all__ = [
    "LIVE_FRAMES",
    "MAP_TYPE_ARRAY",
    "UPDATE_ANY",
    "UPDATE_EXIST",
    "UPDATE_NOEXIST",
    "XDP_ABORTED",
    "XDP_DROP",
    "XDP_PASS",
    "XDP_REDIRECT",
    "XDP_TX",
    "BatchError",
    "BpfError",
    "Link",
    "LinkInfo",
    "Map",
    "MapInfo",
    "NotSupportedError",
    "Object",
    "Program",
    "ProgramInfo",
    "ProgramRun",
    "RecordBatch",
    "RingBuffer",
    "VerifierError",
    "XdpLink",
    "XdpMode",
    "XdpState",
    "enable_run_time_stats",
    "xdp_query",
]
