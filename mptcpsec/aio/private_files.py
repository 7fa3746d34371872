"""Opening files that hold secrets (key logs, private keys) without being tricked.

A path that is a symlink is refused (``O_NOFOLLOW``), so nobody who can write the directory
redirects our secrets into a file of their choosing; a file that exists already must be a
regular file owned by this user with no group or other permissions, since its old mode,
not the one we would create it with, is what protects it (papers/SPEC.md section 7.5,
papers/THREATS.md section 3).
"""

from __future__ import annotations

import os
import stat

from ..errors import UnsafeFileError as UnsafeFileError


def check_private_fd(fd: int, path: str) -> None:
    """Refuse the open file ``fd`` unless it is ours, regular, and mode 0600 or stricter."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeFileError(f"{path!r} is not a regular file")
    if st.st_uid != os.geteuid():
        raise UnsafeFileError(f"{path!r} is owned by uid {st.st_uid}, not by us "
                              f"(uid {os.geteuid()})")
    if st.st_mode & 0o077:
        raise UnsafeFileError(f"{path!r} has mode {stat.S_IMODE(st.st_mode):04o}: group or "
                              f"others may access it (chmod 600 {path})")


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)``, then
    :func:`check_private_fd`; ``O_TRUNC`` is applied only after the checks passed."""
    name = os.fspath(path)
    truncate = bool(flags & os.O_TRUNC)
    flags = (flags & ~os.O_TRUNC) | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o600)
    except OSError:
        if os.path.islink(name):
            raise UnsafeFileError(f"{name!r} is a symbolic link; refusing to follow it") \
                from None
        raise
    try:
        check_private_fd(fd, name)
        if truncate:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


__all__ = ["UnsafeFileError", "check_private_fd", "open_private"]
