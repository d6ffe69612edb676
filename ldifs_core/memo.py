"""An in-process cache with a memory budget: entries are dropped least recently used first when their bytes add
up past the budget, so a few 224-px datasets or large models cannot pile up the way a count-limited cache lets
them. Thread-safe; a value is built once even when several threads ask for it at the same time."""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class ByteBudgetCache(Generic[V]):
    def __init__(self, budget_bytes: int, size_of: Callable[[V], int]):
        self.budget_bytes = budget_bytes
        self._size_of = size_of
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        """The cached value of `key`, else `build()`'s (kept while it fits the budget; one larger than the whole
        budget is returned but not kept)."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:  # a second thread waits here for the first one's value instead of building its own
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
                    return self._entries[key][0]
            try:
                value = build()
                size = self._size_of(value)
            except BaseException:
                with self._lock:
                    self._building.pop(key, None)
                raise
            with self._lock:
                if size <= self.budget_bytes:
                    self._entries[key] = (value, size)
                    while self.size_bytes() > self.budget_bytes:
                        self._entries.popitem(last=False)
                self._building.pop(key, None)
            return value

    def size_bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
