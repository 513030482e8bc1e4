"""One process at a time on a local-mode data folder (`serve`, or `train` opening its Redis).

Two private redis-servers appending to one append-only file corrupt it, and nothing else stopped a
second `serve` from starting one. An flock rather than a PID file: the kernel drops it when the
holder dies, even by SIGKILL, so a crash never leaves a stale lock behind. The file stays in place
(deleting it would let two processes lock two different inodes); it names the holder for the
refusal message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from gateway.settings import ConfigError

LOCK_FILE = "serve.lock"


def _holder(fd: int) -> str:
    """`switchboard serve` (PID 1234), from what the holder wrote into the lock file."""
    with contextlib.suppress(OSError, ValueError):
        pid, _, role = os.pread(fd, 64, 0).decode().strip().partition(" ")
        return f"`switchboard {role or 'serve'}` (PID {int(pid)})"
    return "another switchboard process (PID unknown)"


def busy_message(data_dir: Path, holder: str) -> str:
    return (
        f"configuration error: SWITCHBOARD_DATA_DIR: {data_dir.resolve()} is in use by {holder}; "
        "stop it, or set SWITCHBOARD_DATA_DIR to another folder"
    )


class DataDirLock:
    def __init__(self, data_dir: Path, role: str = "serve") -> None:
        self.data_dir, self.role = data_dir, role
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the folder, or raise the one-line `ConfigError` naming who has it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise ConfigError(busy_message(self.data_dir, holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.role}\n".encode(), 0)
        self.fd = fd

    @property
    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def lock_holder(data_dir: Path) -> str | None:
    """Who holds the folder, or None when nobody does. A shared, non-blocking probe: it never holds
    up a `serve` for longer than the probe itself."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    finally:
        os.close(fd)  # also drops the probe's shared lock
    return None
