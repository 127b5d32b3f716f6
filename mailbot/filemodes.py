"""Files holding customer data are the daemon user's alone: 0600 files, 0700 directories.

Whatever the umask mailbot starts with (a shell's 022, a unit's 0027): every `mailbot`
command sets the process umask to 077 first (`private_umask`), so whatever it or a
library creates — the SQLite database and its `-wal`/`-shm`, outgoing Maildir files,
letters, exports, the pipe's socket directory — is private. The writers of such files
also ask for 0600/0700 themselves (`private_dir`, `open_private`), so that mailbot used
as a library, under another umask, does the same. A SQLite database found readable by
others (made by an older mailbot, or copied in) is tightened when it is opened.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700


def private_umask() -> int:
    """Set the process umask to 077; returns the one it replaces."""
    return os.umask(PRIVATE_UMASK)


def private_dir(path: Path) -> None:
    """Make `path` (and missing parents) 0700; an existing directory is left as it is
    (it may be a shared one the admin made, e.g. the state directory)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    for made in missing:
        os.chmod(made, DIR_MODE)  # mkdir's mode goes through the umask; parents get the default


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    """A file descriptor on `path`, created 0600 (an existing file is made 0600 too)."""
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: Path, data: bytes) -> None:
    with os.fdopen(open_private(path), "wb") as f:
        f.write(data)


def private_sqlite(path: Path) -> None:
    """Before SQLite opens `path`: its directory exists (0700 if made now), the file
    exists as 0600 (SQLite gives its `-wal`, `-shm` and `-journal` the database file's
    mode), and existing files readable by others are tightened (when they are ours)."""
    private_dir(path.parent)
    if not path.exists():
        os.close(open_private(path, os.O_WRONLY | os.O_CREAT))
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = path.with_name(path.name + suffix)
        try:
            st = p.stat()
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                os.chmod(p, st.st_mode & 0o700)
        except FileNotFoundError:
            pass
