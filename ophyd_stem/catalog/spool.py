"""The spool: a write-ahead log of Bluesky documents, one JSON-lines file per run.

Every document is appended here (on the RunEngine's thread, before anything else happens to
it) and only marked written once the catalog has it, so a catalog that goes away loses
nothing. Files, under ``data_dir/spool``::

    <start uid>.jsonl       {"name": ..., "doc": ...} per line, in emission order
    <start uid>.state.json  {"written": n, "complete": bool}: how many lines the catalog has

numpy arrays are kept exactly (dtype, shape, bytes) as ``{"__ndarray__": base64, "dtype":
..., "shape": [...]}``; numpy scalars become plain numbers. A line is only valid once its
newline is on disk, so a reader never sees half a document.

While a session writes a run it holds an advisory lock on the run's file, so that
``import_spool`` in another process leaves that run alone.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Iterator, List, Optional, Tuple

import numpy as np

__all__ = [
    "RunSpool",
    "SpooledRun",
    "decode_document",
    "encode_document",
    "read_documents",
    "spooled_runs",
]

_ARRAY_TAG = "__ndarray__"


def _default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        if array.dtype.hasobject:
            return array.tolist()
        return {
            _ARRAY_TAG: base64.b64encode(array.tobytes()).decode("ascii"),
            "dtype": array.dtype.str,
            "shape": list(array.shape),
        }
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    # Anything else (an enum from a device, a custom object): its text, rather than losing
    # the whole document over one odd metadata value.
    return str(value)


def encode_document(name: str, doc: dict) -> bytes:
    """One spool line (with its newline) for a document.

    Example:
        >>> line = encode_document("event", {"data": {"spectrum": np.arange(3.0)}})
        >>> decode_document(line)[1]["data"]["spectrum"]
        array([0., 1., 2.])
    """
    # The standard library rather than a faster encoder: it keeps NaN and infinities (as
    # JSON's common extension) where others silently write null.
    text = json.dumps({"name": name, "doc": doc}, default=_default, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def _object_hook(obj: dict) -> Any:
    if _ARRAY_TAG in obj:
        raw = base64.b64decode(obj[_ARRAY_TAG])
        return np.frombuffer(raw, dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    return obj


def decode_document(line: bytes) -> Tuple[str, dict]:
    """The ``(name, doc)`` pair of one spool line, numpy arrays restored."""
    record = json.loads(line, object_hook=_object_hook)
    return record["name"], record["doc"]


def read_documents(
    path: Path, start: int = 0, stop: Optional[int] = None
) -> Iterator[Tuple[str, dict]]:
    """The complete documents of a spool file, lines ``start`` to ``stop`` (exclusive).

    A last line without its newline (a write cut short) is not a document yet and is skipped.
    """
    with open(path, "rb") as file:
        for index, line in enumerate(file):
            if stop is not None and index >= stop:
                return
            if not line.endswith(b"\n"):
                return
            if index >= start:
                yield decode_document(line)


def _lock(file: IO) -> bool:
    """Take the advisory lock of a spool file without waiting; False if someone holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no locking, see module docstring
        return True
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _write_state(path: Path, written: int, complete: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"written": written, "complete": complete}))
    os.replace(tmp, path)  # atomic: a reader sees the old state or the new one


class RunSpool:
    """The spool file of one run, open for appending (and locked) while the run is written.

    Args:
        spool_dir: the spool directory (``CatalogSettings.spool_dir``).
        run_uid: the run's start document uid.

    Example:
        >>> spool = RunSpool(Path("/tmp/spool"), "abc")  # doctest: +SKIP
        >>> spool.append("start", {"uid": "abc", "time": 0.0})  # doctest: +SKIP
        0
    """

    def __init__(self, spool_dir: Path, run_uid: str) -> None:
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.run_uid = run_uid
        self.path = spool_dir / f"{run_uid}.jsonl"
        self.state_path = spool_dir / f"{run_uid}.state.json"
        # Open for the run's lifetime (appends, and the lock), closed by close()/remove().
        self._file = open(self.path, "ab")  # noqa: SIM115
        _lock(self._file)
        self.count = 0
        self.written = 0
        self.complete = False

    def append(self, name: str, doc: dict) -> int:
        """Append one document and return its line index.

        The line reaches the operating system before this returns (it survives the death of
        this process); the stop document is also forced to disk.
        """
        self._file.write(encode_document(name, doc))
        self._file.flush()
        if name == "stop":
            os.fsync(self._file.fileno())
            self.complete = True
        index = self.count
        self.count += 1
        return index

    def mark_written(self, written: int) -> None:
        """Record that the catalog has the first ``written`` documents."""
        self.written = written
        _write_state(self.state_path, written, self.complete)

    def close(self) -> None:
        """Release the file (and its lock); the files stay."""
        with contextlib.suppress(OSError, ValueError):
            self._file.close()

    def remove(self) -> None:
        """Close and delete the run's spool files (the catalog has all of it)."""
        self.close()
        for path in (self.path, self.state_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@dataclass
class SpooledRun:
    """A run found in the spool directory.

    Attributes:
        run_uid: the start document's uid.
        path: its JSON-lines file.
        documents: number of complete documents in the file.
        written: how many of them the catalog confirmed.
        complete: True when the stop document is in the file.
    """

    run_uid: str
    path: Path
    documents: int
    written: int
    complete: bool

    @property
    def state_path(self) -> Path:
        """The file recording how much of the run the catalog has."""
        return self.path.with_name(f"{self.run_uid}.state.json")


def _inspect(path: Path) -> SpooledRun:
    documents, complete = 0, False
    with open(path, "rb") as file:
        for line in file:
            if not line.endswith(b"\n"):
                break
            documents += 1
            # cheap test first: only lines that may be a stop document are decoded
            if line.startswith(b'{"name":"stop"'):
                complete = True
    run_uid = path.name[: -len(".jsonl")]
    written = 0
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        written = int(json.loads(path.with_name(f"{run_uid}.state.json").read_text())["written"])
    return SpooledRun(run_uid, path, documents, written, complete)


def spooled_runs(spool_dir: Path) -> List[SpooledRun]:
    """The runs in the spool, oldest first (by file modification time)."""
    if not spool_dir.is_dir():
        return []
    paths = sorted(spool_dir.glob("*.jsonl"), key=lambda p: (p.stat().st_mtime, p.name))
    return [_inspect(path) for path in paths]


@contextlib.contextmanager
def claim(run: SpooledRun) -> Iterator[bool]:
    """Hold the run's lock for the duration; yields False if a live session is writing it."""
    with open(run.path, "ab") as file:
        yield _lock(file)
