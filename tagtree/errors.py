"""Errors a user can cause. The CLI prints these as one clear message, without a traceback."""


class TagtreeError(Exception):
    """A problem the user can fix: bad input, a missing model, an incompatible database."""
