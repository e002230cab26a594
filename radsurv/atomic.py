"""Atomic file writes that respect the umask.

``tempfile.mkstemp`` creates files with mode 0600 whatever the umask; renamed into place, such
a file would be unreadable for the user's group (a features table shared on a cluster). Every
atomic write here gives the file the mode an ordinary ``open(path, "w")`` would: 0666 minus the
umask.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; restored at once
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once, at import, before any worker threads exist


def default_file_mode() -> int:
    """The mode a newly created regular file gets under this process's umask."""
    return 0o666 & ~_UMASK


def temporary_path(path: Path) -> Path:
    """A new empty file beside ``path`` (same folder, so a rename is atomic), with the
    default file mode; the caller writes it, then ``os.replace`` s it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, default_file_mode())
    return Path(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    tmp = temporary_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
