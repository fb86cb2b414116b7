"""Private files: what this project writes holds e-mail addresses, password hashes, a token
key and alert e-mails, so folders are created 0700 and files 0600, whatever the umask."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents 0700 (mkdir's mode is cut by the umask: each
    one created here is chmod'ed after); a folder that exists is left as it is."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue  # created meanwhile by another process: theirs
        os.chmod(folder, PRIVATE_DIR)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty and 0600 unless it exists (its folder private when created here):
    SQLite then creates its -wal and -shm files with the database file's permissions."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return path
    try:
        os.fchmod(fd, PRIVATE_FILE)  # O_CREAT's mode is cut by the umask too
    finally:
        os.close(fd)
    return path
