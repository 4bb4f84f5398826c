"""Files that never look complete before they are: every write in babel-edge goes through here.

    write_text(path, text) / write_bytes / write_json      one file, atomically
    with atomic_file(path) as tmp: writer(tmp)             for writers that want a path
    with atomic_dir(out) as tmp: fill tmp                  a whole directory, swapped in
    safetensors_header(file) / safetensors_params(dir)     read without loading tensors
    sha256_file(path)

The rule: write under a temporary name next to the target (same file system), then
`os.replace`. A directory that already exists is renamed aside first, the new one is
renamed in, and only then is the old one deleted — so a crash at any point leaves
either the old or the new directory, never nothing. Temporary names start with a dot
and carry the process id, so concurrent writers never share one.
Files and directories get the user's umask (tempfile's mkdtemp/mkstemp would give
0700/0600 to artefacts other users of the machine are meant to read).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import struct
import threading
from pathlib import Path
from typing import Any, Iterator

_counter = iter(range(1 << 62))
_counter_lock = threading.Lock()


def _tmp_name(path: Path, kind: str = "tmp") -> Path:
    with _counter_lock:
        n = next(_counter)
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{n}")


def _umask() -> int:
    # os.umask can only be read by setting it; do it under a lock and restore at once
    with _counter_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path next to `path`; renamed onto `path` when the block ends without
    an exception, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextlib.contextmanager
def atomic_dir(out: str | Path, replace: bool = True) -> Iterator[Path]:
    """A fresh temporary directory next to `out`, swapped in for `out` when the block ends
    without an exception (old one renamed aside, new one renamed in, old one deleted);
    removed otherwise. With replace=False an existing `out` is an error (FileExistsError)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(out, "partial")
    tmp.mkdir(mode=0o777 & ~_umask())
    try:
        yield tmp
        swap_in(tmp, out, replace)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def swap_in(new: Path, out: Path, replace: bool = True) -> None:
    """Put `new` (a finished file or directory) at `out`; an existing `out` goes last."""
    old = None
    if out.exists() or out.is_symlink():
        if not replace:
            raise FileExistsError(f"'{out}' exists")
        old = _tmp_name(out, "old")
        os.replace(out, old)
    try:
        os.replace(new, out)
    except BaseException:
        if old is not None:                    # put the old one back
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


def remove(*paths: str | Path) -> None:
    """Delete files or directories that may not exist."""
    for p in map(Path, paths):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safetensors_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes, offsets, and
    "__metadata__"), read without touching the tensor data."""
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        return json.loads(fh.read(n))


def safetensors_params(model_dir: str | Path) -> int:
    """Parameters stored in a directory's *.safetensors files (headers only)."""
    total = 0
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        for name, meta in safetensors_header(f).items():
            if name != "__metadata__":
                total += math.prod(meta["shape"])
    return total


def safetensors_metadata(path: str | Path, key: str) -> Any | None:
    """json.loads of one "__metadata__" entry of a safetensors file (None when absent/unreadable)."""
    try:
        meta = safetensors_header(path).get("__metadata__") or {}
        return json.loads(meta[key])
    except (OSError, ValueError, KeyError, struct.error):
        return None
