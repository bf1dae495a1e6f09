"""The one exception type for mistakes a user can make and fix."""


class SpikepruneError(Exception):
    """A problem caused by input (config, files, arguments); its message names the thing and the fix.

    The CLI prints it on one line without a traceback and exits non-zero.
    """
