"""pingkiller's own extension: kern/pingkiller.h (the ABI) and the skeleton's embedded ELF."""

import re
from pathlib import Path

from cffi_src import linux_bpf_h

INCLUDES = """
#include <linux/types.h>
#include "pingkiller.h"
#include "pingkiller.skel.h"
"""

TYPES_CDEF = linux_bpf_h.INTEGER_TYPES

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
