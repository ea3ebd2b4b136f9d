"""Atomic writes and stable keys: the two rules that make every long job resumable.

A file is written under a temporary name in its final directory, then renamed over the final
name, so a reader sees either the old file, the new file or nothing: never half of one, whenever the
writing process is killed. `durable=True` also fsyncs before the rename, which protects against an
operating-system crash too; bulk per-track writes skip it (it cost 3.4 ms a file here).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agf.errors import WriteError


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it is renamed to `path`, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o644)  # mkstemp makes 0600; outputs are meant to be shared and served
    try:
        yield tmp_path
        if durable:
            with open(tmp_path, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except (OSError, RuntimeError) as exc:
        tmp_path.unlink(missing_ok=True)
        _raise_if_disk_full(exc, path)
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


# Less free space than this after a failed write means the write failed for lack of space.
FULL_DISK_BYTES = 1 << 20


def _raise_if_disk_full(error: BaseException, path: Path) -> None:
    """A WriteError (one line: free space, rerun) when writing `path` failed for lack of space."""
    if _disk_full(error, path.parent):
        raise WriteError(f"{path}: no space left on the device; free some space and run the same command "
                         "again (finished work is kept)") from error


def _disk_full(error: BaseException, directory: Path) -> bool:
    """Whether a failed write failed for lack of space. Writers do not all say so: NumPy raises OSError
    '27648 requested and 4032 written' without an errno, torch RuntimeError '... unexpected pos ...'."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(directory).free < FULL_DISK_BYTES
    except OSError:
        return False


@contextlib.contextmanager
def appending(path: str | Path) -> Iterator[Any]:
    """An append-only binary handle on `path` (created with its folder); a full disk is a WriteError. Only one
    process may append to a file: readers trust every byte before a record's journal line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "ab") as handle:
            yield handle
    except OSError as exc:
        _raise_if_disk_full(exc, path)
        raise


def write_bytes_atomic(path: str | Path, data: bytes, durable: bool = True) -> None:
    """Write bytes to `path` atomically."""
    with atomic_path(path, durable) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str, durable: bool = True) -> None:
    """Write text (UTF-8) to `path` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"), durable)


def write_json_atomic(path: str | Path, obj: Any, durable: bool = True) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n", durable)


def write_npy_atomic(path: str | Path, array: np.ndarray, durable: bool = True) -> None:
    """Write a NumPy array as .npy to `path` atomically (readable with np.load(mmap_mode='r'))."""
    with atomic_path(path, durable) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def write_parquet_atomic(path: str | Path, frame: Any) -> None:
    """Write a pandas DataFrame as Parquet to `path` atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


def stable_key(*parts: Any, length: int = 12) -> str:
    """A short hex digest of JSON-serialisable parts (settings dicts, upstream keys)."""
    blob = json.dumps(parts, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def safe_name(name: str) -> str:
    """A file-name-safe version of a name (runs of other characters become '_')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _json_default(obj: Any) -> Any:
    """JSON fallback for NumPy scalars/arrays, paths and tuples-as-sets."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, os.PathLike)):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
