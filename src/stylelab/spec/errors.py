"""The one exception type for mistakes a user can fix (bad config, unreadable image, unknown layer...).

The CLI prints its message on one line and exits non-zero, without a traceback.
"""


class StylelabError(Exception):
    """A user-facing error: the message names the problem and the fix."""
