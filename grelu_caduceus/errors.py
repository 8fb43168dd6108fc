"""Errors that carry a message for the user (the bottom of the package: imports nothing of ours).

The command line prints a :class:`UserError` as one line, without a traceback; library callers get
an ordinary exception whose message names the problem and the fix. Where a policy keeps going on
odd input (IUPAC codes read as N, windows padded with N, ...) it warns with an
:class:`InputWarning` that says what was done and how often; the command line prints those as one
line each too.
"""


class UserError(Exception):
    """A mistake in the user's input: printed as one clear message, without a traceback."""


class InputWarning(UserWarning):
    """Input that was used after a documented fix-up; the message says what was done and how often."""


__all__ = ["InputWarning", "UserError"]
