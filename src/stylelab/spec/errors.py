"""The one exception type for mistakes a user can fix; the CLI prints its message on one line, no traceback."""


class StylelabError(Exception):
    """A user-facing error: the message names the problem and the fix."""
