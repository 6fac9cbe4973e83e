"""Errors the command line reports as one line, without a traceback."""


class FaceauditError(Exception):
    """A problem the user can fix: bad input, an unreachable service, a locked store."""
