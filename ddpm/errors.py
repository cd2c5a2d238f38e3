"""Errors caused by what the user asked for. Their message says what was wrong and how to fix it; the entry
points print it as one line instead of a traceback."""

import re
import shlex

# What Hydra's override grammar reads as a plain value; anything else (spaces, non-ASCII letters, commas, which
# would make a sweep) it reads only in quotes.
PLAIN_VALUE = re.compile(r"[A-Za-z0-9_/\-+.:@%]*")


def hydra_value(value) -> str:
    """`value` as Hydra reads it back unchanged from a command line: quoted when it is not plain."""
    text = str(value)
    return text if PLAIN_VALUE.fullmatch(text) else '"' + text.replace('"', '\\"') + '"'


def argument(key: str, value) -> str:
    """`key=value` as a message tells the user to type it in a shell: `resume='/runs/a b'` is one argument
    there, and Hydra reads the path back whole."""
    return shlex.quote(f"{key}={hydra_value(value)}")


class DDPMError(Exception):
    pass


class ConfigError(DDPMError, ValueError):
    """A config value or command-line argument that cannot work."""



class CheckpointError(DDPMError):
    """A checkpoint that is missing, cut off, unsafe to unpickle, or of another run than the one it should continue."""


class ClassifierError(DDPMError):
    """The judge network of the sample-quality metrics is missing or unreadable."""


class MNISTFileError(DDPMError):
    """The MNIST files are missing, damaged, or not the official ones."""


class FolderInUseError(DDPMError):
    """A run folder that another process is training into."""


class WriteError(DDPMError):
    """A file that could not be written: the disk is full, over its quota, read-only or failing."""


class NonFiniteError(DDPMError):
    """The loss or the gradients became NaN or infinite."""


class Stopped(Exception):
    """Training stopped by a signal (SIGTERM, SIGINT) with its state saved. Not a DDPMError: nothing was wrong with
    the input, and the command exits with 128 + the signal number, as a shell reports a process the signal killed,
    so that a script or a sweep can tell it from a finished run."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self):
        # Pickled with its signal number: a launcher that runs the job in another process (submitit, Ray) sends the
        # job's exception back pickled, and Exception's own reduce would rebuild it from the message alone.
        return type(self), (str(self), self.signum)

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
