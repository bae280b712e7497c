"""pingkiller's own extension: kern/pingkiller.h (the ABI) and the skeleton's embedded ELF."""

import re
from pathlib import Path

INCLUDES = """
#include <linux/types.h>
#include "pingkiller.h"
#include "pingkiller.skel.h"
"""

TYPES_CDEF = """
typedef uint8_t __u8;
typedef uint16_t __u16;
typedef uint32_t __u32;
typedef uint64_t __u64;
"""

SKELETON_CDEF = """
const void *pingkiller_bpf__elf_bytes(size_t *sz);
"""


def abi_cdef(header: Path) -> str:
    """kern/pingkiller.h as cffi reads it: preprocessor lines dropped but integer defines."""
    kept = []
    for line in header.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if re.fullmatch(r"#define\s+\w+\s+\d+", stripped):
                kept.append(stripped)
            continue
        kept.append(line)
    return "\n".join(kept)
