"""`StartStop`: the ``with`` protocol for test servers and processes, written once."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Self


class StartStop(ABC):
    """Something a test starts and must stop again: ``with X(...) as x:`` calls `start`, then
    `stop` on the way out, also when the block raised (the exception still propagates)."""

    @abstractmethod
    def start(self) -> Self:
        """Start; returns self."""

    @abstractmethod
    def stop(self) -> None:
        """Stop (idempotent: safe after a failed or no start)."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
