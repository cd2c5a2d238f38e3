"""Errors caused by what the user asked for. Their message says what was wrong and how to fix it; the entry
points print it as one line instead of a traceback."""


class DDPMError(Exception):
    pass


class ConfigError(DDPMError, ValueError):
    """A config value or command-line argument that cannot work."""

