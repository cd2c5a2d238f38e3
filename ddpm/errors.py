"""Errors caused by what the user asked for. Their message says what was wrong and how to fix it; the entry
points print it as one line instead of a traceback."""


class DDPMError(Exception):
    pass


class ConfigError(DDPMError, ValueError):
    """A config value or command-line argument that cannot work."""


def exit_on_user_error(main):
    """Wrap an entry point: a DDPMError (also when Hydra's instantiate wrapped it) becomes one `error:` line on
    stderr and exit status 2; anything else keeps its traceback."""
    import functools
    import sys

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception as e:
            cause = e
            while cause is not None and not isinstance(cause, DDPMError):
                cause = cause.__cause__
            if cause is None:
                raise
            print(f"error: {cause}", file=sys.stderr)
            sys.exit(2)

    return wrapper
