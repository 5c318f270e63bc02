"""The one exception family for a user's wrong input: the ``fer-lightning`` command prints its
message alone (what is wrong, which option or file, what to do) and exits with status 2,
never a traceback. Code that checks a user's data or options raises a subclass of it."""

from __future__ import annotations


class UserInputError(ValueError):
    """A file, folder or option the user gave is wrong; the message says how to mend it."""


class MissingInputError(UserInputError, FileNotFoundError):
    """A file or folder the user named (or a command must make first) is not there."""
