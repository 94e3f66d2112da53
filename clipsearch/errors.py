"""One exception type for every failure a user can fix, so the CLI can print it as one line."""

from __future__ import annotations


class ClipsearchError(Exception):
    """A problem the user can act on: `message` says what went wrong, `hint` what to do."""

    def __init__(self, message: str, hint: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.param = param  # the library parameter at fault; a front end names its own option for it

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class StoreLockedError(ClipsearchError):
    """Another process is writing to the store."""


class ModelMismatchError(ClipsearchError):
    """The store was built with a different model than the one asked for."""


class ModelUnavailableError(ClipsearchError):
    """The model name is unknown or its weights cannot be had."""


class NotFoundError(ClipsearchError):
    """No such image in the store (an unknown or deleted id), or its file is gone or changed since indexing."""
