"""Errors of the torch-only core that are about the caller's input: the message names the problem
and the fix. The command line prints them (like ``grelu_caduceus.errors.UserError``) as one line."""


class InputError(ValueError):
    """Bad input to the core (a checkpoint, a name, an option), fully explained by its message."""


class CheckpointError(InputError):
    """A checkpoint that cannot be loaded as the requested model; the message says why."""


class HubCheckpointError(CheckpointError):
    """A checkpoint name or path that cannot be resolved to a local folder; the message says what to do."""


class UnsafePickleError(CheckpointError):
    """A pickled weight file that only loads with full unpickling, which the caller did not allow."""


__all__ = ["CheckpointError", "HubCheckpointError", "InputError", "UnsafePickleError"]
