"""A generic, typed binding to libbpf: objects, programs, maps, XDP and tcx links, clsact tc
filters, ring buffers.

This layer knows nothing about pings; it can load and drive any BPF object.
"""

from pingkiller.bpf.errors import BpfError, NotSupportedError, VerifierError, WrongObjectType
from pingkiller.bpf.fd import FD, ObjectKind
from pingkiller.bpf.link import (
    LINK_TYPE_TCX,
    LINK_TYPE_XDP,
    Link,
    LinkInfo,
    TcDirection,
    TcxLink,
    XdpLink,
    XdpMode,
    XdpState,
    attach_raw_tracepoint,
    tcx_query,
    tcx_supported,
    xdp_query,
)
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
from pingkiller.bpf.program import (
    PROG_TYPE_SCHED_CLS,
    PROG_TYPE_XDP,
    Program,
    ProgramInfo,
    enable_run_time_stats,
)
from pingkiller.bpf.ringbuf import RecordBatch, RingBuffer
from pingkiller.bpf.tc import (
    TcFilter,
    TcFilterInfo,
    clsact_present,
    remove_clsact_if_empty,
    tc_filters,
)
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
    "FD",
    "LINK_TYPE_TCX",
    "LINK_TYPE_XDP",
    "LIVE_FRAMES",
    "MAP_TYPE_ARRAY",
    "PROG_TYPE_SCHED_CLS",
    "PROG_TYPE_XDP",
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
    "ObjectKind",
    "Program",
    "ProgramInfo",
    "ProgramRun",
    "RecordBatch",
    "RingBuffer",
    "TcDirection",
    "TcFilter",
    "TcFilterInfo",
    "TcxLink",
    "VerifierError",
    "WrongObjectType",
    "XdpLink",
    "XdpMode",
    "XdpState",
    "attach_raw_tracepoint",
    "clsact_present",
    "enable_run_time_stats",
    "remove_clsact_if_empty",
    "tc_filters",
    "tcx_query",
    "tcx_supported",
    "xdp_query",
]
