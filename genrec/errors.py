"""Errors that tell the user which file, line or field is wrong."""

from __future__ import annotations

from pathlib import Path


class GenrecError(Exception):
    """Base class for errors genrec raises on purpose (bad input, bad settings)."""


class DataError(GenrecError):
    """Bad input data. The message always names the file, and the line or field where known."""

    def __init__(self, path: str | Path | None, message: str, line: int | None = None,
                 field: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        where = self.path or "<input>"
        if line is not None:
            where += f", line {line}"
        if field is not None:
            where += f", field '{field}'"
        super().__init__(f"{where}: {message}")


class ConfigError(GenrecError):
    """A bad setting: unknown key, wrong type, impossible value."""
