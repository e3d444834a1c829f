"""Outputs that appear complete or not at all, readable as the user's umask says.

Three tools, one rule:

- ``atomic_path(path)``: one file, written beside its target and renamed onto it.
- ``output_transaction(directory)``: several files (or folders) staged in a hidden folder inside ``directory`` and
  moved into place together, so the set is all new or all old.
- ``atomic_dir(path)``: one folder replaced whole (a transaction of one folder).

Temporary names carry the host and process id of their writer. SIGTERM, SIGHUP and Ctrl-C while staging unwind
the Python stack (the staged files are removed and the old outputs stay); the same signals during the moves
into place wait until the last move is done. A writer killed outright (SIGKILL, power loss) leaves its temporary
names behind: the next writer into that folder removes them, or finishes the moves of a transaction that had
started committing (its journal lists them), so the folder is never left mixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import secrets
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

from .exceptions import InvalidInputError, MobClipError, OutputInUseError

_TMP_MARK = ".mobclip-tmp@"  # in every temporary file name written by atomic_path
_TXN_PREFIX = ".mobclip-txn@"  # a transaction's staging folder
_JOURNAL = ".mobclip-commit.json"  # inside a staging folder: the names being moved into place
_TRASH = ".mobclip-old"  # inside a staging folder: replaced folders, removed after the moves
_OWNER = re.compile(r"\.mobclip-(?:tmp|txn)@(?P<host>[A-Za-z0-9_-]*)@(?P<pid>\d+)@[0-9a-f]+")
_LOCK = threading.Lock()


# -- permissions --------------------------------------------------------------------------------------------
def current_umask() -> int:
    """The process umask, read without changing it (Linux), else by setting and restoring it once."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _publish_mode(path: Path) -> None:
    """Give a finished file the mode a plain ``open(path, "w")`` would have: 0666 minus the umask."""
    if path.is_file() and not path.is_symlink():
        os.chmod(path, 0o666 & ~current_umask())


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (best effort where the filesystem refuses)."""
    if path.is_dir() and os.name == "nt":
        return  # Windows cannot open a folder to flush it
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    with contextlib.suppress(OSError):
        fd = os.open(path, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- signals: unwind while staging, wait while committing ------------------------------------------------------
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP", "SIGBREAK") if hasattr(signal, n))
_OPEN_FILES_LOCKED = os.name == "nt"  # Windows: a file another program holds open cannot be moved or replaced
_state = {"depth": 0, "defer": 0, "pending": [], "previous": {}}
COMMITTED: list[Path] = []
"""Folders whose output transaction committed in this process, oldest first: a process stopped by a signal can
still tell its parent which outputs are complete (``mobclip_core.worker``)."""


def _dispatch(signum: int, frame=None) -> None:
    """What the signal would have done, except that a terminating default raises SystemExit (so cleanup runs)."""
    prev = _state["previous"].get(signum, signal.SIG_DFL)
    if prev is signal.SIG_IGN:
        return
    if callable(prev):
        prev(signum, frame)
        return
    raise SystemExit(128 + signum)


def _handler(signum: int, frame) -> None:
    if _state["defer"]:
        _state["pending"].append(signum)
        return
    _dispatch(signum, frame)


@contextlib.contextmanager
def _signals_unwind() -> Iterator[None]:
    """While any output is being written from the main thread, turn termination signals into exceptions.

    Handlers are installed on entry and the previous ones restored on exit: nothing stays changed. Off the main
    thread (QGIS runs algorithms in worker threads) Python cannot install handlers and this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _state["depth"] == 0:
        _state["previous"] = {s: signal.getsignal(s) for s in _SIGNALS}
        for s in _SIGNALS:
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(s, _handler)
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            for s, prev in _state["previous"].items():
                with contextlib.suppress(OSError, ValueError, TypeError):
                    signal.signal(s, prev if prev is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold termination signals back for the few renames of a commit; deliver the first one afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are handled in the main thread only; a journal covers a kill here
        return
    with _signals_unwind():
        _state["defer"] += 1
        try:
            yield
        finally:
            _state["defer"] -= 1
        if not _state["defer"] and _state["pending"]:
            signum = _state["pending"][0]
            _state["pending"].clear()
            _dispatch(signum)


# -- temporary names and their owners ---------------------------------------------------------------------------
def host_tag() -> str:
    """This machine's name as it appears in temporary names."""
    return re.sub(r"[^A-Za-z0-9_-]", "", socket.gethostname())[:24]


def _owner_tag() -> str:
    return f"{host_tag()}@{os.getpid()}@{secrets.token_hex(4)}"


def _owner_gone(name: str) -> bool:
    """True when the temporary ``name`` was made on this host by a process that no longer runs."""
    m = _OWNER.search(name)
    if m is None or m["host"] != host_tag():
        return False  # another machine's (shared storage) or not ours: leave it
    pid = int(m["pid"])
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would end that process: never ask
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def clean_stale(directory: str | Path) -> None:
    """Remove what killed writers left in ``directory``; finish the moves of a transaction that was committing."""
    directory = Path(directory)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or (_TMP_MARK not in name and not name.startswith(_TXN_PREFIX)):
            continue
        if not _owner_gone(name):
            continue
        path = Path(entry.path)
        if name.startswith(_TXN_PREFIX) and (path / _JOURNAL).exists():
            try:
                _roll_forward(path, directory)
            except (OSError, ValueError):
                if _holds_old_outputs(path):
                    continue  # could be neither finished nor undone: keep the old outputs it holds for the next try
        _remove(path)


# -- one file ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    The temporary name keeps ``path``'s suffix (drivers choose formats by it) and is not created in advance, so
    the writer creates it with the umask's mode; the finished file gets 0666 minus the umask in any case.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent)
    tmp = path.parent / f".{path.name}{_TMP_MARK}{_owner_tag()}{path.suffix}"
    with _signals_unwind():
        try:
            yield tmp
            if not tmp.exists():
                raise MobClipError(f"nothing was written to {path}: the writer produced no file")
            _publish_mode(tmp)
            _fsync(tmp)
            with _signals_deferred():
                try:
                    os.replace(tmp, path)
                except PermissionError as exc:  # Windows: another program holds the file open
                    raise OutputInUseError(
                        f"cannot replace {path}: {exc.strerror or exc}. {_held_open_hint()}; {path.name} was left as "
                        "it was"
                    ) from exc
            _fsync(path.parent)
        except BaseException:
            _remove(tmp)
            raise


# -- several files -------------------------------------------------------------------------------------------
class OutputTransaction:
    """Outputs staged in a hidden folder inside ``directory``, moved into place together by ``commit``.

    ``path(name)`` gives where to write ``directory/name`` (a file, or a folder the caller creates; ``name`` may
    hold sub-folders). Nothing in ``directory`` changes before ``commit``; files of ``directory`` that are not
    named are left alone; a named folder replaces the old folder whole.
    """

    def __init__(self, directory: str | Path, *, record: bool = True) -> None:
        self.directory = Path(directory)
        self.record = record  # a commit goes into COMMITTED (a result a stopped worker reports as complete)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except FileExistsError as exc:
            raise InvalidInputError(
                f"output folder {self.directory} is an existing file: give a folder path, or remove the file"
            ) from exc
        except NotADirectoryError as exc:
            raise InvalidInputError(
                f"output folder {self.directory} lies inside a file, not a folder: give another folder path"
            ) from exc
        clean_stale(self.directory)
        self.staging = self.directory / f"{_TXN_PREFIX}{_owner_tag()}"
        self.staging.mkdir()
        self.names: list[str] = []
        self.committed = False

    def path(self, name: str) -> Path:
        """The staged location of ``directory/name``."""
        rel = Path(name)
        if rel.is_absolute() or not rel.parts or ".." in rel.parts or rel.parts[0].startswith(".mobclip-"):
            raise InvalidInputError(f"output name {name!r} must be a plain relative path inside {self.directory}")
        key = rel.as_posix()
        if key not in self.names:
            self.names.append(key)
        staged = self.staging / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def final(self, name: str) -> Path:
        """Where ``name`` will be once committed."""
        return self.directory / name

    def commit(self) -> dict[str, Path]:
        """Move every staged output into place; returns name -> final path."""
        missing = [n for n in self.names if not (self.staging / n).exists()]
        if missing:
            raise MobClipError(f"outputs {missing} were announced but not written; nothing in {self.directory} changed")
        for n in self.names:
            staged = self.staging / n
            for f in staged.rglob("*") if staged.is_dir() else [staged]:
                if f.is_file():
                    _publish_mode(f)
                    _fsync(f)
        journal = self.staging / _JOURNAL
        journal.write_text(json.dumps(self.names))
        _fsync(journal)
        _fsync(self.staging)
        with _signals_deferred():
            _roll_forward(self.staging, self.directory)
            self.committed = True
            if self.record:
                COMMITTED.append(self.directory)  # before a held-back stop signal is delivered
        _remove(self.staging)
        _fsync(self.directory)
        return {n: self.directory / n for n in self.names}

    def rollback(self) -> None:
        """Drop everything staged; if a commit had started, finish it instead (its journal is written)."""
        if self.staging.exists() and (self.staging / _JOURNAL).exists() and not self.committed:
            with contextlib.suppress(OSError, ValueError):
                _roll_forward(self.staging, self.directory)
                self.committed = True
                if self.record:
                    COMMITTED.append(self.directory)  # the outputs are complete: a stopped worker must say so
        if not self.committed and _holds_old_outputs(self.staging):
            return  # neither finished nor undone: the old outputs are in its trash, and a later writer rolls forward
        _remove(self.staging)


def _roll_forward(staging: Path, directory: Path) -> None:
    """Move each journaled name still in ``staging`` into ``directory`` (idempotent: safe to run again).

    First every old output in the way goes into the staging folder's trash, then the new ones into place. Windows
    refuses to move a file another program holds open (a layer QGIS shows): a move that fails in either pass is
    undone -- the new files go back to ``staging``, the old ones back into place, also those an earlier,
    interrupted attempt had moved -- so the folder stays all old (``OutputInUseError``; the journal is dropped so
    that nobody rolls forward later). Should the undo itself fail, the journal stays and a later writer finishes
    the moves instead.
    """
    journal = staging / _JOURNAL
    names = json.loads(journal.read_text())
    trash = staging / _TRASH
    pending = [(i, n) for i, n in enumerate(names) if _exists(staging / n)]
    try:
        for i, name in pending:
            dst = directory / name
            if _exists(dst):
                trash.mkdir(exist_ok=True)
                os.replace(dst, trash / f"{i}")
        for _, name in pending:
            dst = directory / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, dst)
    except OSError as exc:
        failed = exc.filename if isinstance(exc.filename, str) else str(directory)
        _undo_moves(staging, directory, names)  # raises if it cannot: the journal then stays
        journal.unlink()
        raise OutputInUseError(
            f"cannot replace {failed}: {exc.strerror or exc}. {_held_open_hint()}; the previous outputs in "
            f"{directory} were left as they were"
        ) from exc


def _undo_moves(staging: Path, directory: Path, names: list[str]) -> None:
    """Back to all old: each new output already in place returns to ``staging``, each old one in the trash returns
    to its place (whichever attempt moved it)."""
    trash = staging / _TRASH
    for i, name in enumerate(names):
        src, dst, old = staging / name, directory / name, trash / f"{i}"
        if not _exists(src) and _exists(dst):  # this name's new output is in place
            os.replace(dst, src)
        if _exists(old):
            os.replace(old, dst)


def _holds_old_outputs(staging: Path) -> bool:
    trash = staging / _TRASH
    return trash.is_dir() and any(trash.iterdir())


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def _held_open_hint() -> str:
    if _OPEN_FILES_LOCKED:
        return (
            "Another program may hold it open (in QGIS, remove the layers read from it from the project), or write "
            "to another folder"
        )
    return "Check that the folder can be written to, or write to another folder"


def check_replaceable(paths) -> None:
    """Refuse, before a long run, to start one whose outputs could not be put in place at its end: on Windows an
    existing file another program holds open cannot be moved (a layer QGIS shows from the last run). Each existing
    path is renamed aside and back, with signals held back between the two; elsewhere open files can be replaced
    and nothing is done."""
    if not _OPEN_FILES_LOCKED:
        return
    for path in map(Path, paths):
        if not path.exists():
            continue
        probe = path.with_name(f".{path.name}{_TMP_MARK}{_owner_tag()}")
        with _signals_deferred():
            try:
                os.replace(path, probe)
            except OSError as exc:
                raise OutputInUseError(
                    f"cannot replace {path}: {exc.strerror or exc}. {_held_open_hint()}, and run again"
                ) from exc
            os.replace(probe, path)


@contextlib.contextmanager
def output_transaction(directory: str | Path, *, record: bool = True) -> Iterator[OutputTransaction]:
    """``with output_transaction(d) as txn: write(txn.path("a.parquet")); ...``: all of them appear, or none.
    ``record=False``: an intermediate step (a run's dataset), not recorded in ``COMMITTED`` as a result."""
    with _signals_unwind():
        txn = OutputTransaction(directory, record=record)
        try:
            yield txn
            txn.commit()
        except BaseException:
            txn.rollback()
            raise


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, record: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``path`` whole, on error it is removed."""
    path = Path(path)
    with output_transaction(path.parent, record=record) as txn:
        staged = txn.path(path.name)
        staged.mkdir()
        yield staged


# -- reading ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def reading(path: str | Path, what: str = "file", *, fix: str | None = None) -> Iterator[Path]:
    """Turn a reader's low-level failure on ``path`` (truncated, wrong format, not a file) into one clear error.

    ``with reading(p, "embedding table") as p: df = pd.read_parquet(p)``. MobClipErrors pass through unchanged.
    """
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{what} {path} does not exist: check the path")
    try:
        yield path
    except MobClipError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        kind = "a folder" if path.is_dir() else f"{path.stat().st_size} bytes"
        detail = str(exc).strip().splitlines()[0][:300].rstrip(". ") if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(
            f"cannot read {what} {path} ({kind}): {detail}. "
            + (fix or "Is it truncated, still being written, or another format? Write it again or give the right file")
        ) from exc
