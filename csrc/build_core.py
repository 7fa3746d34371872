"""cffi build script for the C core (API mode, out of line, linked to libcrypto)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = (HERE / "mptcpsec_core.h").read_text()


def _cdef(header: str) -> str:
    """The declarations cffi needs: the header without preprocessor lines and comments."""
    text = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    consts = re.findall(r"#define (MPS_\w+) ", header)
    decl = "\n".join(lines)
    # Numeric macros are exported as `static const` of the right width.
    extra = "\n".join(
        f"#define {c} ..." if c != "MPS_NO_PATCH" else "static const size_t MPS_NO_PATCH;"
        for c in consts
        if c != "MPTCPSEC_CORE_H"
    )
    return extra + "\n" + decl


ffibuilder = FFI()
ffibuilder.cdef(_cdef(HEADER))

_extra_compile = ["-O2", "-std=c99", "-Wall", "-Wextra"]
_extra_link: list[str] = []
if os.environ.get("MPTCPSEC_SANITIZE"):
    _san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1", "-g"]
    _extra_compile += _san
    _extra_link += _san

ffibuilder.set_source(
    "mptcpsec._core",
    '#include "mptcpsec_core.h"',
    sources=[str(Path("csrc") / "mptcpsec_core.c")],
    include_dirs=["csrc"],
    libraries=["crypto"],
    extra_compile_args=_extra_compile,
    extra_link_args=_extra_link,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
