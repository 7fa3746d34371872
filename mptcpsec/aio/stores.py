"""File-backed stores and loaders for the key exchanges, kept out of the sans-I/O core.

``FileKnownHosts`` is the split-path trust-on-first-use store on disk (papers/SPEC.md
section 7.3); ``load_psk`` reads a pre-shared key from a file or an environment variable
(section 7.4); ``write_certificate`` saves a generated certificate and its key. Parsing and
validation stay in ``mptcpsec.crypto``.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ..crypto.certs import CertificateBundle
from ..crypto.keyschedule import Secret
from ..crypto.known_hosts import KnownHostsConflictError, format_known_host, parse_known_hosts
from ..crypto.psk import PskError, PskMissingError, parse_psk
from .private_files import open_private

#: The environment variable ``load_psk`` reads when no file is given.
PSK_ENV_VAR = "MPTCPSEC_PSK"


class FileKnownHosts:
    """A known_hosts file (``NAME ed25519 HEXKEY`` lines), re-read on every lookup so keys
    that another process remembered are seen.

    ``remember`` holds an exclusive lock (``flock`` on ``PATH.lock``), re-reads the file,
    refuses a second key for a name already on file, and replaces the file atomically (temp
    file in the same directory, fsync, rename): a reader sees the old or the new file,
    never half a line, and two writers cannot both add the same name.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, bytes]:
        """Every entry of the file ({} when it does not exist yet)."""
        if not self.path.exists():
            return {}
        return parse_known_hosts(self.path.read_text(encoding="utf-8"))

    def get(self, name: str) -> bytes | None:
        """The key on file for ``name`` (SPEC section 7.3), or None."""
        return self.load().get(name)

    def remember(self, name: str, key: bytes) -> None:
        """Add ``name ed25519 HEXKEY`` (first use, SPEC section 7.3); a name already on
        file raises :class:`KnownHostsConflictError` and leaves the file as it was."""
        line = format_known_host(name, key)
        lock_path = self.path.with_name(self.path.name + ".lock")
        lock_fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                old = self.path.read_text(encoding="utf-8")
                mode = self.path.stat().st_mode & 0o777
            except FileNotFoundError:
                old, mode = "", 0o644
            if name in parse_known_hosts(old):
                raise KnownHostsConflictError(
                    f"{os.fspath(self.path)!r} already holds a key for {name!r}")
            if old and not old.endswith("\n"):
                old += "\n"
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.",
                                       dir=self.path.parent or ".")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    f.write(old + line)
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, mode)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        finally:
            os.close(lock_fd)

    def __repr__(self) -> str:
        return f"FileKnownHosts({os.fspath(self.path)!r})"


def load_psk(path: str | os.PathLike[str] | None = None, env: str | None = PSK_ENV_VAR,
             environ: Mapping[str, str] | None = None) -> Secret:
    """Load the PSK from ``path`` if given, else from the environment variable ``env``."""
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text(encoding="ascii")
        except FileNotFoundError:
            raise PskMissingError(f"pre-shared key file {os.fspath(p)!r} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PskError(f"cannot read pre-shared key file {os.fspath(p)!r}: {exc}") from None
        return parse_psk(text, f"pre-shared key file {os.fspath(p)!r}")
    environ = os.environ if environ is None else environ
    if env is None or not environ.get(env):
        raise PskMissingError(f"no pre-shared key: give a file or set ${env or PSK_ENV_VAR}")
    return parse_psk(environ[env], f"${env}")


def write_certificate(bundle: CertificateBundle, certfile: str | os.PathLike[str],
                      keyfile: str | os.PathLike[str]) -> None:
    """Write the certificate (0644) and the private key (0600, created new or truncated).

    The key file is refused (:class:`~mptcpsec.aio.private_files.UnsafeFileError`) when it
    is a symlink, owned by someone else, or open to group or others, before anything is
    written (an existing file keeps its old mode, so 0600 at creation is not enough).
    """
    fd = open_private(keyfile, os.O_WRONLY | os.O_TRUNC)
    Path(certfile).write_bytes(bundle.cert_pem)
    with os.fdopen(fd, "wb") as f:
        f.write(bundle.key_pem)


__all__ = ["PSK_ENV_VAR", "FileKnownHosts", "load_psk", "write_certificate"]
