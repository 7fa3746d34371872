"""Per-record AEAD throughput: the C core (batched and per call) against its peers.

Every implementation seals or opens the same records: plaintexts of one size, associated
data of a record header plus a 16-byte option template (as a DATA record with a DSS
mapping carries). Runs are interleaved across implementations and repeated; the figure
reported is the median.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

from ..crypto import Algorithm, get_backend
from ..wire.header import HEADER_LEN, RecordType

SIZES = (64, 1400, 16384)
OPS = ("seal", "open")
IMPLS = ("core-batch", "core", "cryptography", "pynacl", "openssl-speed")
OPTION_TEMPLATE_LEN = 16
BATCH_BYTES = 256 * 1024
_OPENSSL_NAMES = {
    Algorithm.AES_128_GCM: "aes-128-gcm",
    Algorithm.AES_256_GCM: "aes-256-gcm",
    Algorithm.CHACHA20_POLY1305: "chacha20-poly1305",
}


@dataclass(frozen=True)
class Row:
    alg: str
    op: str
    size: int
    impl: str
    MBps: float  # the JSON field name the issue fixes
    runs: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class CryptoBenchConfig:
    sizes: tuple[int, ...] = SIZES
    algs: tuple[Algorithm, ...] = tuple(Algorithm)
    ops: tuple[str, ...] = OPS
    impls: tuple[str, ...] = IMPLS
    repeats: int = 5
    seconds: float = 0.2  # per run of a Python-driven implementation
    openssl_seconds: int = 1  # per `openssl speed` run (its smallest unit)


def applicable(impl: str, alg: Algorithm) -> bool:
    return impl != "pynacl" or alg is Algorithm.CHACHA20_POLY1305


def _records_per_batch(size: int) -> int:
    return max(16, min(1024, BATCH_BYTES // max(size, 1)))


def _nonce(iv_int: int, counter: int) -> bytes:
    return (iv_int ^ counter).to_bytes(12, "big")


def _ad(size: int) -> bytes:
    header = bytes([1, RecordType.DATA, 0, OPTION_TEMPLATE_LEN]) + (size + 16).to_bytes(2, "big")
    return header + bytes(OPTION_TEMPLATE_LEN)


def make_operation(impl: str, op: str, alg: Algorithm, size: int) -> tuple[Callable[[], None], int]:
    """A callable doing one unit of work, and the plaintext bytes it processes."""
    key, iv = os.urandom(alg.key_len), os.urandom(12)
    n = _records_per_batch(size)
    payload = os.urandom(size * n)
    pieces = [payload[i * size:(i + 1) * size] for i in range(n)]
    ad = _ad(size)
    iv_int = int.from_bytes(iv, "big")
    core = get_backend("c")
    template = bytes(OPTION_TEMPLATE_LEN)

    if impl == "core-batch":
        sealer = core.sealer(alg, key, iv)
        if op == "seal":
            def run() -> None:
                sealer.seal_chunks(payload, size, RecordType.DATA, 0, template, seq_off=4,
                                   seq_base=0, len_off=12)
            return run, size * n
        wire = bytearray(sealer.seal_chunks(payload, size, RecordType.DATA, 0, template,
                                            seq_off=4, len_off=12))
        out = bytearray(len(wire))
        opener = core.opener(alg, key, iv)

        def run() -> None:
            opener.set_counter(0)
            res = opener.open_records(wire, out=out, max_records=n)
            if res.failed or len(res.records) != n:
                raise AssertionError(f"benchmark open failed: {res.error}")
        return run, size * n

    if impl == "core":
        sealer = core.sealer(alg, key, iv)
        if op == "seal":
            def run() -> None:
                seal = sealer._seal_at  # the per-call path, counters given explicitly
                for i, pt in enumerate(pieces):
                    seal(i, ad, pt)
            return run, size * n
        bodies = [sealer._seal_at(i, ad, pt) for i, pt in enumerate(pieces)]
        opener = core.opener(alg, key, iv)

        def run() -> None:
            open_ = opener.open
            for i, body in enumerate(bodies):
                open_(i, ad, body)
        return run, size * n

    if impl == "cryptography":
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

        cls = ChaCha20Poly1305 if alg is Algorithm.CHACHA20_POLY1305 else AESGCM
        aead = cls(key)
        if op == "seal":
            def run() -> None:
                enc = aead.encrypt
                for i, pt in enumerate(pieces):
                    enc(_nonce(iv_int, i), pt, ad)
            return run, size * n
        bodies = [aead.encrypt(_nonce(iv_int, i), pt, ad) for i, pt in enumerate(pieces)]

        def run() -> None:
            dec = aead.decrypt
            for i, body in enumerate(bodies):
                dec(_nonce(iv_int, i), body, ad)
        return run, size * n

    if impl == "pynacl":
        import nacl.bindings as nb

        if op == "seal":
            def run() -> None:
                enc = nb.crypto_aead_chacha20poly1305_ietf_encrypt
                for i, pt in enumerate(pieces):
                    enc(pt, ad, _nonce(iv_int, i), key)
            return run, size * n
        bodies = [nb.crypto_aead_chacha20poly1305_ietf_encrypt(pt, ad, _nonce(iv_int, i), key)
                  for i, pt in enumerate(pieces)]

        def run() -> None:
            dec = nb.crypto_aead_chacha20poly1305_ietf_decrypt
            for i, body in enumerate(bodies):
                dec(body, ad, _nonce(iv_int, i), key)
        return run, size * n

    raise ValueError(f"no in-process operation for {impl!r}")


def measure(run: Callable[[], None], nbytes: int, seconds: float) -> float:
    """MB/s (10**6 bytes per second of wall time) over at least `seconds`."""
    run()  # warm up
    done = 0
    start = time.perf_counter()
    while True:
        run()
        done += nbytes
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed / 1e6


_SPEED_LINE = re.compile(r"^\+F:\d+:[^:]+:([0-9.]+)\s*$", re.M)


def libcrypto_versions() -> dict[str, str]:
    """The OpenSSL each implementation runs on: the C core links the system libcrypto
    (found in this process's mappings once ``mptcpsec._core`` is loaded), the
    `cryptography` wheel bundles its own. A newer OpenSSL there has faster AES-GCM and
    ChaCha20 assembly, which is why `cryptography` can lead at large records."""
    import ctypes

    from cryptography.hazmat.backends.openssl.backend import backend

    from .. import _core  # noqa: F401  (maps the core's libcrypto)

    versions = {"cryptography": backend.openssl_version_text()}
    core_lib = None
    try:
        with open(f"/proc/{os.getpid()}/maps", encoding="ascii", errors="replace") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                name = os.path.basename(path)
                if name.startswith("libcrypto.so") and "cryptography" not in path:
                    core_lib = path
                    break
    except OSError:
        pass
    if core_lib is not None:
        try:
            fn = ctypes.CDLL(core_lib).OpenSSL_version
            fn.restype, fn.argtypes = ctypes.c_char_p, [ctypes.c_int]
            versions["core"] = fn(0).decode()
        except (OSError, AttributeError):
            pass
    versions.setdefault("core", "unknown (libcrypto not found in this process)")
    return versions


def version_note(versions: dict[str, str]) -> str:
    """One paragraph for the table: both OpenSSL builds and what a difference means."""
    core, crypt = versions["core"], versions["cryptography"]
    lines = [f"C core links {core}; cryptography's wheel bundles {crypt}."]
    if core.split()[:2] != crypt.split()[:2]:
        lines.append("Different OpenSSL builds: where cryptography beats the core at large "
                     "records (16 KiB) the per-byte cipher code differs, not the call "
                     "overhead; the core-batch / openssl-speed ratio compares like with like.")
    return "\n".join(textwrap.fill(line, 88) for line in lines)


def openssl_available() -> bool:
    return shutil.which("openssl") is not None


def openssl_speed(alg: Algorithm, op: str, size: int, seconds: int) -> float:
    """MB/s from the linked libcrypto's own `openssl speed -aead -evp` (wall time)."""
    cmd = ["openssl", "speed", "-mr", "-elapsed", "-seconds", str(seconds), "-bytes", str(size),
           "-aead", "-evp", _OPENSSL_NAMES[alg]]
    if op == "open":
        cmd.insert(-2, "-decrypt")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 10 + 30,
                          check=False)
    match = _SPEED_LINE.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"`{' '.join(cmd)}` failed: {proc.stderr.strip() or proc.stdout[-200:]}")
    return float(match.group(1)) / 1e6


def run_crypto_bench(cfg: CryptoBenchConfig,
                     progress: Callable[[str], None] | None = None) -> list[Row]:
    """Measure every (alg, op, size, impl); runs are interleaved and repeated."""
    impls = [i for i in cfg.impls if i != "openssl-speed" or openssl_available()]
    cells = [(alg, op, size, impl) for alg in cfg.algs for op in cfg.ops for size in cfg.sizes
             for impl in impls if applicable(impl, alg)]
    ops = {}
    for alg, op, size, impl in cells:
        if impl != "openssl-speed":
            ops[(alg, op, size, impl)] = make_operation(impl, op, alg, size)
    samples: dict[tuple[Algorithm, str, int, str], list[float]] = {c: [] for c in cells}
    for rep in range(cfg.repeats):
        for i, cell in enumerate(cells):
            alg, op, size, impl = cell
            if progress:
                progress(f"run {rep + 1}/{cfg.repeats}, {i + 1}/{len(cells)}: "
                         f"{alg.value} {op} {size} B {impl}")
            if impl == "openssl-speed":
                samples[cell].append(openssl_speed(alg, op, size, cfg.openssl_seconds))
            else:
                run, nbytes = ops[cell]
                samples[cell].append(measure(run, nbytes, cfg.seconds))
    return [Row(alg.value, op, size, impl, round(statistics.median(v), 1), len(v))
            for (alg, op, size, impl), v in samples.items()]


def ratio(rows: Iterable[Row], alg: str, op: str, size: int, impl: str, peer: str) -> float | None:
    """impl's throughput over peer's for one cell, or None if either is missing."""
    table = {(r.alg, r.op, r.size, r.impl): r.MBps for r in rows}
    a, b = table.get((alg, op, size, impl)), table.get((alg, op, size, peer))
    if a is None or not b:
        return None
    return a / b


def format_table(rows: list[Row]) -> str:
    """A plain-text table: one line per (alg, op, size), one column per implementation."""
    impls = [i for i in IMPLS if any(r.impl == i for r in rows)]
    keys = sorted({(r.alg, r.op, r.size) for r in rows},
                  key=lambda k: ([a.value for a in Algorithm].index(k[0]), OPS.index(k[1]), k[2]))
    table = {(r.alg, r.op, r.size, r.impl): r.MBps for r in rows}
    head = f"{'algorithm':<18} {'op':<5} {'bytes':>6} " + " ".join(f"{i:>13}" for i in impls)
    lines = [head + "   (MB/s, median)", "-" * len(head)]
    for alg, op, size in keys:
        cells = []
        for impl in impls:
            v = table.get((alg, op, size, impl))
            cells.append(f"{v:>13.1f}" if v is not None else f"{'-':>13}")
        lines.append(f"{alg:<18} {op:<5} {size:>6} " + " ".join(cells))
    return "\n".join(lines)


__all__ = ["HEADER_LEN", "CryptoBenchConfig", "Row", "format_table", "ratio", "run_crypto_bench"]
