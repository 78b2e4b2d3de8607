"""Errors that the command line turns into a one-line message and exit status 1."""


class SentiwatchError(Exception):
    """A failure the user can act on; its message is printed as one line, without a traceback."""


class ConfigError(SentiwatchError):
    """A setting is unknown or invalid; the message names the key."""


class DataError(SentiwatchError):
    """An input file is unusable; the message names the file and the first offending rows."""


class BundleError(SentiwatchError):
    """A model bundle is missing, tampered with or inconsistent; the message names the file."""

