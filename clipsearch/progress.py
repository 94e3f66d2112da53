"""What long work reports to: the CLI's progress bar, a server's log, or nothing (the library never prints)."""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    def start(self, total: int, description: str) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def stage(self, message: str) -> None: ...  # a status line for work without a count (loading a model)
    def note(self, message: Any) -> None: ...  # something the user should know now (str() of it says it)
