"""Key logs and private key files: no symlinks, nothing open to others, ours only (SPEC 7.5)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from mptcpsec.aio.keylog import KeyLogFile
from mptcpsec.aio.private_files import UnsafeFileError
from mptcpsec.aio.stores import write_certificate
from mptcpsec.crypto.certs import generate_self_signed
from mptcpsec.crypto.keylog import KeyLogError

LINE = "MPTCPSEC_SECRET " + "00" * 32 + " " + "11" * 32 + "\n"


def _keylog(path: Any) -> None:
    with KeyLogFile(path) as log:
        log.write(LINE)


def _keyfile(path: Any) -> None:
    write_certificate(generate_self_signed(), path.parent / "cert.pem", path)


@pytest.mark.parametrize("writer, error", [(_keylog, KeyLogError), (_keyfile, UnsafeFileError)])
def test_symlink_is_not_followed(tmp_path: Any, writer: Any, error: type) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    link = tmp_path / "secrets"
    link.symlink_to(victim)
    with pytest.raises(error, match="symbolic link"):
        writer(link)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("writer, error", [(_keylog, KeyLogError), (_keyfile, UnsafeFileError)])
def test_existing_file_readable_by_others_is_refused(tmp_path: Any, writer: Any,
                                                     error: type) -> None:
    path = tmp_path / "secrets"
    path.write_text("")
    path.chmod(0o644)
    with pytest.raises(error, match="group or others"):
        writer(path)
    assert path.read_text() == ""
    path.chmod(0o600)
    writer(path)
    assert path.stat().st_size > 0 and path.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file to another user")
@pytest.mark.parametrize("writer, error", [(_keylog, KeyLogError), (_keyfile, UnsafeFileError)])
def test_file_owned_by_someone_else_is_refused(tmp_path: Any, writer: Any, error: type) -> None:
    path = tmp_path / "secrets"
    path.write_text("")
    path.chmod(0o600)
    os.chown(path, 65534, 65534)
    with pytest.raises(error, match="owned by uid 65534"):
        writer(path)
    assert path.read_text() == ""


def test_new_files_are_0600(tmp_path: Any) -> None:
    _keylog(tmp_path / "k.log")
    _keyfile(tmp_path / "k.key")
    for name in ("k.log", "k.key"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
