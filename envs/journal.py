"""The search journal: an evaluator wrapper that writes each child's result to disk the
moment it is known, so a killed search retrains only the children in flight.

Entries are read weights-only (:func:`eas.checkpoint.read_torch_file`): an entry
holding anything but tensors and plain data is refused (:func:`check_journal`
does so for a whole folder before a resume writes anything), never unpickled.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eas.checkpoint import CheckpointError, UnsafeFileError, atomic_save, read_torch_file
from eas.envs.cache import fingerprint
from eas.envs.evaluators import StopSearch
from eas.envs.record import EvalResult, as_result
from eas.network import ChildNet

__all__ = ["Journal", "check_journal"]


def check_journal(folder: str | Path) -> int:
    """Read every entry of a journal folder weights-only; return how many there are.

    Raises :class:`~eas.checkpoint.UnsafeFileError` (one line naming the entry)
    at the first entry that holds objects eas does not load. Damaged entries
    pass: the resumed round retrains their children.
    """
    entries = sorted(Path(folder).glob("*.pt")) if Path(folder).is_dir() else []
    for path in entries:
        try:
            read_torch_file(path)
        except UnsafeFileError:
            raise
        except CheckpointError:
            continue
    return len(entries)


class JournalError(StopSearch):
    """The journal cannot be written; the search stops (its children are not failed)."""


class Journal:
    """Evaluator wrapper that writes each child's result to disk as soon as it is known.

    Files are keyed by (round, fingerprint of the untrained child, occurrence),
    so replaying an interrupted round from the restored RNG states finds the
    children that were already trained and does not train them again.
    """

    def __init__(self, folder: Path, base: Callable[[ChildNet], Any],
                 on_child: Callable[[], Any] | None = None,
                 guard: Callable[[], Any] | None = None) -> None:
        self.folder = Path(folder)
        self.base = base
        self.on_child = on_child
        self.guard = guard
        """Called before every write; raises to stop (e.g. the run folder vanished)."""
        self.round = 0
        self._seen: dict[str, int] = {}
        self.reused = 0
        """Children answered from the journal (after a resume)."""

    def begin_round(self, index: int) -> None:
        """Start round ``index``; files of other rounds are stale and removed."""
        self.round = index
        self._seen = {}
        if self.folder.is_dir():
            for p in self.folder.glob("*.pt"):
                if not p.name.startswith(f"r{index}_"):
                    p.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove every journal file (the round is safely in the checkpoint)."""
        if self.folder.is_dir():
            for p in self.folder.glob("*.pt"):
                p.unlink(missing_ok=True)

    def _key(self, net: ChildNet) -> str:
        digest = hashlib.blake2b(fingerprint(net).encode(), digest_size=8).hexdigest()
        n = self._seen.get(digest, 0)
        self._seen[digest] = n + 1
        return f"r{self.round}_{digest}_{n}"

    def _load(self, key: str) -> Any:
        path = self.folder / f"{key}.pt"
        if not path.is_file():
            return None
        try:
            data = read_torch_file(path)
            return EvalResult.from_dict(data["record"], state_dict=data["state_dict"])
        except UnsafeFileError:
            raise  # never executed: refused, like every file that is not plain data
        except Exception:  # noqa: BLE001 - a damaged journal entry is simply retrained
            return None

    def _store(self, key: str, result: Any) -> None:
        if self.guard is not None:
            self.guard()
        path = self.folder / f"{key}.pt"
        try:
            atomic_save({"record": result.to_dict(), "state_dict": result.state_dict}, path)
        except OSError as exc:  # a full disk, a file where the folder belongs: stop, naming it
            raise JournalError(f"cannot write the journal of finished children {path}: "
                               f"{exc.strerror or exc}") from exc
        if self.on_child is not None:
            self.on_child()

    def __call__(self, net: ChildNet) -> Any:
        """Evaluate one child (journal first)."""
        return self.evaluate_many([net])[0]

    def evaluate_many(self, nets: list[ChildNet]) -> list[Any]:
        """Evaluate children, answering from the journal where possible."""
        keys = [self._key(net) for net in nets]
        results: list[Any] = [self._load(k) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        self.reused += len(nets) - len(todo)
        many = getattr(self.base, "evaluate_many", None)
        if callable(many) and todo:
            stored: set[int] = set()

            def journal_one(j: int, result: Any) -> None:
                """Journal child ``todo[j]`` the moment the back-end has its final result."""
                i = todo[j]
                results[i] = as_result(result)
                self._store(keys[i], results[i])
                stored.add(i)

            batch = [nets[i] for i in todo]
            if "on_result" in inspect.signature(many).parameters:
                fresh = many(batch, on_result=journal_one)
            else:  # a back-end without per-child callbacks: journal when the batch returns
                fresh = many(batch)
            for i, r in zip(todo, fresh):
                if i not in stored:
                    results[i] = as_result(r)
                    self._store(keys[i], results[i])
            return results
        for i in todo:
            try:
                r = as_result(self.base(nets[i]))
            except StopSearch:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken child must not stop a search
                r = EvalResult(0.0, failed=True, reason=f"{type(exc).__name__}: {exc}")
            results[i] = r
            self._store(keys[i], r)
        return results
