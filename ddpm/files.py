"""Writing a file whole or not at all, and a full or failing disk as one line instead of a traceback."""

import contextlib
import errno
import io
import os
from pathlib import Path
from typing import IO, Iterator

import torch

from ddpm.errors import WriteError

# The errors of a filesystem that cannot take more data, and how the one-line message names them.
DISK_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EIO: "an input/output error of the device",
    errno.EROFS: "the filesystem is read-only",
    errno.EFBIG: "the file is larger than the filesystem allows",
}


def write_fault(error: BaseException | None, path: str | Path | None = None) -> WriteError | None:
    """The WriteError behind `error`: one raised by `written` (also when another error came while handling it, such
    as a logger's flush onto the same full disk), or a disk fault of an OSError; None when there is none."""
    seen = error
    while seen is not None:
        if isinstance(seen, WriteError):
            return seen
        seen = seen.__cause__ or seen.__context__
    while error is not None:
        if isinstance(error, OSError) and error.errno in DISK_FAULTS:
            where = path or error.filename or "a file"
            return WriteError(f"cannot write {where}: {DISK_FAULTS[error.errno]} ({errno.errorcode[error.errno]})")
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def written(path: str | Path, text: bool = False) -> Iterator[IO]:
    """A file to write `path` through: it is a temporary one beside `path`, synced and renamed over it when the
    block ends, and removed if the block fails, so that `path` holds its old content or the new one, whole, also
    after a kill or a full disk. A disk fault becomes a WriteError naming `path`."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "w" if text else "wb", **({"newline": ""} if text else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as e:
        fault = write_fault(e, path)
        if fault is None:
            raise
        raise fault from None
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with written(path, text=True) as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with written(path) as f:
        f.write(data)
    return Path(path)


def save_tensors(obj, path: str | Path) -> Path:
    """torch.save through `written`, serialised in memory first: torch.save reports a failed write as a RuntimeError
    of its zip writer, without the errno that tells a full disk from a bug."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with written(path) as f:
        f.write(buffer.getbuffer())
    return Path(path)
