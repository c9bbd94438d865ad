"""Open files kept for a stream's life and lent to its threads, one thread at a time each.

Opening a remote ROOT file costs four dependent round trips (a stat for the
truncation check, then the header, the directory and the tree's metadata),
so a stream keeps what its scan opened and its reader threads borrow those
handles instead of opening their own. A handle is lent to one thread at a
time: uproot fills parts of a file's metadata lazily on first use without a
lock (six threads reading one freshly opened RNTuple at once, Python switching
threads as often as it can, got errors or wrong values in 24 of 1,680 reads),
so two threads never use the same uproot object at once. A thread that finds
a file busy opens another handle of it while it has fewer than ``per_file``,
else waits for one to be given back.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from ..errors import SchemaError
from .paths import file_identity
from .rootio import Tree, forget_remote, open_tree

__all__ = ["OpenFiles"]

#: (path, tree, cache_dir): what one handle opens.
_Key: TypeAlias = tuple[str, str, "str | None"]


def __dir__() -> list[str]:
    return __all__


@dataclass(eq=False)
class _Handle:
    key: _Key
    tree: Tree
    stale: bool = False  # dropped while lent: closed when given back


def _close(handle: _Handle) -> None:
    # a local file's memory map stays open while arrays still point into it: ignore that
    with contextlib.suppress(Exception):
        handle.tree.file.close()


class OpenFiles:
    """Open trees shared by threads, at most ``max_open`` of them (least recently used go).

    ``tree(path, tree, cache_dir)`` lends a handle for a ``with`` block: an idle
    one when there is one, else a new one while the file has fewer than
    ``per_file`` open, else the first one given back. A read that fails inside
    the block closes its handle; `drop` forgets a file's handles and size so
    that a retry opens it afresh. The sizes of remote files are asked once
    (`identity`, the truncation check) and kept in ``sizes``.
    """

    def __init__(self, max_open: int = 16, per_file: int = 1) -> None:
        if max_open < 1 or per_file < 1:
            msg = f"max_open and per_file must be at least 1, not {max_open} and {per_file}"
            raise ValueError(msg)
        self.max_open = max_open
        self.per_file = per_file
        #: remote path -> size in bytes, asked once
        self.sizes: dict[str, int] = {}
        #: handles opened so far
        self.opened = 0
        self._changed = threading.Condition()
        self._idle: collections.OrderedDict[_Key, list[_Handle]] = collections.OrderedDict()
        self._lent: set[_Handle] = set()
        self._opening: collections.Counter[_Key] = collections.Counter()

    def __repr__(self) -> str:
        with self._changed:
            idle = sum(len(handles) for handles in self._idle.values())
            return f"OpenFiles({idle} idle, {len(self._lent)} lent, {self.opened} opened)"

    @contextlib.contextmanager
    def tree(self, path: str, tree: str, cache_dir: str | None = None) -> Iterator[Tree]:
        """Lend the tree ``tree`` of ``path`` for the ``with`` block."""
        handle = self._borrow((path, tree, cache_dir))
        try:
            yield handle.tree
        except BaseException as err:
            # a failed read may leave the file half-read: the next one opens it afresh
            # (a bad expression, found after reading, leaves it as it was)
            handle.stale = not isinstance(err, SchemaError)
            raise
        finally:
            self._give_back(handle)

    def identity(self, path: str) -> dict[str, Any]:
        """`file_identity` of ``path``, asking a remote server for its size once."""
        return file_identity(path, self.sizes)

    def drop(self, path: str) -> None:
        """Close the handles of ``path`` (those lent out when given back) and forget its size.

        What fsspec keeps open of it goes too (`forget_remote`).
        """
        forget_remote(path)
        with self._changed:
            self.sizes.pop(path, None)
            closing = [h for key in list(self._idle) if key[0] == path for h in self._idle.pop(key)]
            for handle in self._lent:
                handle.stale = handle.stale or handle.key[0] == path
            self._changed.notify_all()
        for handle in closing:
            _close(handle)

    def close(self) -> None:
        """Close every handle (those lent out when given back); sizes are kept."""
        with self._changed:
            closing = [handle for handles in self._idle.values() for handle in handles]
            self._idle.clear()
            for handle in self._lent:
                handle.stale = True
            self._changed.notify_all()
        for handle in closing:
            _close(handle)

    def _borrow(self, key: _Key) -> _Handle:
        with self._changed:
            while True:
                idle = self._idle.get(key)
                if idle:
                    handle = idle.pop()
                    if not idle:
                        del self._idle[key]
                    self._lent.add(handle)
                    return handle
                lent = sum(1 for handle in self._lent if handle.key == key)
                if lent + self._opening[key] < self.per_file:
                    self._opening[key] += 1
                    break
                self._changed.wait()
        try:
            tree = open_tree(key[0], key[1], key[2], sizes=self.sizes)
        except BaseException:
            with self._changed:
                self._opened(key)
            raise
        handle = _Handle(key, tree)
        with self._changed:
            self._opened(key)
            self.opened += 1
            self._lent.add(handle)
        return handle

    def _opened(self, key: _Key) -> None:
        self._opening[key] -= 1
        if not self._opening[key]:
            del self._opening[key]
        self._changed.notify_all()

    def _give_back(self, handle: _Handle) -> None:
        closing = []
        with self._changed:
            self._lent.discard(handle)
            if handle.stale:
                closing.append(handle)
            else:
                self._idle.setdefault(handle.key, []).append(handle)
                self._idle.move_to_end(handle.key)
                closing.extend(self._evicted())
            self._changed.notify_all()
        for old in closing:
            _close(old)

    def _evicted(self) -> list[_Handle]:
        """Idle handles over ``max_open``, least recently given back first."""
        evicted = []
        count = len(self._lent) + sum(len(handles) for handles in self._idle.values())
        while count > self.max_open and self._idle:
            key, handles = next(iter(self._idle.items()))
            evicted.append(handles.pop(0))
            if not handles:
                del self._idle[key]
            count -= 1
        return evicted
