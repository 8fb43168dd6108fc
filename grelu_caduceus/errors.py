"""Errors that carry a message for the user (the bottom of the package: imports nothing of ours).

The command line prints a :class:`UserError` as one line, without a traceback; library callers get
an ordinary exception whose message names the problem and the fix.
"""


class UserError(Exception):
    """A mistake in the user's input: printed as one clear message, without a traceback."""


__all__ = ["UserError"]
