"""Errors caused by what the user asked for. Their message says what was wrong and how to fix it; the entry
points print it as one line instead of a traceback."""


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

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
