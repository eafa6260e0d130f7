"""Values read from folders of files, read again only when one of the files changed.

A service run in memory builds its topology and schema catalog each time it starts; an
evaluation starts hundreds of them in one process. :class:`FolderCache` keeps what was
read, keyed by what the folders hold: every file's path, size and modification time,
so a changed, added or removed file is read again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["FolderCache", "folder_signature"]


def folder_signature(folders: Iterable[Path], patterns: Iterable[str]) -> tuple[Hashable, ...]:
    """What the files of ``folders`` matching ``patterns`` are now: (path, size, mtime)."""
    found: list[Hashable] = []
    for folder in folders:
        for pattern in patterns:
            for path in sorted(Path(folder).glob(pattern)):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                found.append((str(path), stat.st_size, stat.st_mtime_ns))
        found.append(str(folder))  # a folder with no file still counts
    return tuple(found)


class FolderCache(Generic[T]):
    """The last ``size`` values read, by key (a folder signature and the options)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._values: OrderedDict[Hashable, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, read: Callable[[], T]) -> T:
        """The value kept under ``key``, or ``read()``'s (kept; an error is not)."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = read()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value
