"""The errors armlens raises on purpose: bad input, bad data, a wrong model, a locked or unusable output, ...

Every one is an :class:`ArmlensError`, whose message is one line meant for the person running armlens. The command
line prints exactly those as ``armlens CMD: error: MESSAGE`` (exit 2); any other exception is a bug in armlens and is
shown with its traceback and a request for a bug report (exit 1).

The subclasses that replace a builtin error also inherit from it (:class:`BadInputError` is a ``ValueError``,
:class:`NotFoundError` a ``FileNotFoundError``, ...), so code catching the builtin keeps working.

This module imports nothing (``armlens.io``, the bottom layer, raises these).
"""

from __future__ import annotations


class ArmlensError(Exception):
    """An error armlens raises on purpose, with a one-line message for the user (the CLI prints it, no traceback)."""


class BadInputError(ArmlensError, ValueError):
    """An argument, option or setting that armlens cannot use (a value out of range, an unknown name, ...)."""


class BadOutputError(BadInputError):
    """An output path that cannot be used: a folder where a file is expected, an unwritable folder, someone else's
    files, an existing file without ``--overwrite``, a folder holding a run with other settings."""


class LockedOutputError(BadOutputError):
    """A results folder another running process is writing (:class:`armlens.io.ResultsLock`)."""


class BadDataError(ArmlensError, ValueError):
    """A data or results file armlens cannot read: malformed JSON, a missing field, a corrupt saved ARM, ..."""


class ModelMismatchError(ArmlensError, ValueError):
    """A saved fit made on another model (id, architecture or weights) than the one it is loaded on."""


class NotFoundError(ArmlensError, FileNotFoundError):
    """A file or folder armlens was pointed at that does not exist (or is the wrong kind)."""


class _KeyMessage(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; these carry a sentence, not a key
        return str(self.args[0]) if self.args else ""


class UnknownNameError(BadInputError, _KeyMessage):
    """A name armlens does not know (a dataset, a subset, a method); also a ``KeyError``."""


class MissingFieldError(BadDataError, _KeyMessage):
    """A data row or record without a field armlens needs; also a ``KeyError``."""


class NotFittedError(ArmlensError, RuntimeError):
    """A reward model or judge used before it was fitted or loaded."""


class SetupError(ArmlensError, RuntimeError):
    """The environment cannot do what was asked: a package version, a download, a device, a model's hooks."""


class SaveError(ArmlensError, OSError):
    """Results that could not be written anywhere."""


class ArmlensWarning(UserWarning):
    """Something armlens did as asked but that deserves a look (an ARM loaded on another model with ``force``);
    the command line prints it as one line."""
