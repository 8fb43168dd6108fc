"""Errors that carry a message for the user (the bottom of the package: imports nothing of ours).

The command line prints a :class:`UserError` as one line, without a traceback; library callers get
an ordinary exception whose message names the problem and the fix. Where a policy keeps going on
odd input (IUPAC codes read as N, windows padded with N, ...) it warns with an
:class:`InputWarning` that says what was done and how often; the command line prints those as one
line each too.
"""


import sys


class UserError(Exception):
    """A mistake in the user's input: printed as one clear message, without a traceback."""


class InputWarning(UserWarning):
    """Input that was used after a documented fix-up; the message says what was done and how often."""


def is_user_error(err: BaseException) -> bool:
    """A UserError, or an input error of the torch-only core (``core.errors.InputError``, which the
    core defines itself since it imports nothing of the package outside core/)."""
    core_errors = sys.modules.get("grelu_caduceus.core.errors")
    return isinstance(err, UserError) or (core_errors is not None and isinstance(err, core_errors.InputError))


__all__ = ["InputWarning", "UserError", "is_user_error"]
