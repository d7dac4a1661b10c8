"""Errors of the training run (one line each; the CLI prints them as `error: ...`)."""


class RunError(ValueError):
    """A training request that cannot run as asked (bad argument, bad folder)."""
