"""One training run per folder: an exclusive lock file `OUT/train.lock`.

The file names its holder (pid, host, start time) and the holder keeps an
`fcntl.flock` on it for as long as it lives. The kernel drops a flock when
its process dies, however it dies (kill -9, OOM killer), so on the same host
"file present, flock free" proves the holder is gone: that stale lock is
reported and taken over, which keeps `kill -9` then `--resume` working
without a flag. A lock naming another host (a shared folder) cannot be
proved stale from here (flock over NFS is not reliable): it is refused
until `--take-over-lock` says its run is dead.
"""
import json
import logging
import os
import socket
import time

try:
    import fcntl
except ImportError:  # Windows: the O_EXCL file alone, stale ones need the flag
    fcntl = None

from tfdeblur.training.errors import RunError

logger = logging.getLogger(__name__)

LOCK_NAME = "train.lock"


class RunLock:
    """Held lock on a run folder; `release()` (idempotent) deletes it."""

    def __init__(self, path, fd):
        self.path, self._fd = path, fd

    def release(self):
        if self._fd is None:
            return
        try:
            os.remove(self.path)  # first: a waiting run must not see our file unlocked
        except OSError:
            pass
        os.close(self._fd)  # drops the flock
        self._fd = None


def _holder(text):
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}", info
    except (ValueError, KeyError, TypeError):
        return "an unknown holder (unreadable lock file)", {}


def acquire(out, take_over=False, log=None):
    """Locks run folder `out` (which exists) for this process, or raises
    `RunError` naming the holder."""
    log = log or logger.info
    path = os.path.join(out, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    who, _ = _holder(_read(fd))
                    raise RunError(f"`out` {out}: in use by another train ({who}; lock {path}); "
                                   "wait for it to finish or choose another `out`") from None
        except BaseException:
            os.close(fd)
            raise
        # The holder we waited on may have deleted the file between our
        # open and our flock: then we locked an orphan inode; start over.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        previous = _read(fd)
        if previous.strip():
            who, info = _holder(previous)
            proved = fcntl is not None and info.get("host") == socket.gethostname()
            if not (proved or take_over):
                raise RunError(f"`out` {out}: locked by {who} ({path}), which cannot be checked from this host; "
                               "if that run is dead, pass `take_over_lock`")
            log(f"`out` {out}: taking over the stale lock of {who}: that process is gone")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode(), 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    return RunLock(path, fd)


def _read(fd):
    return os.pread(fd, 4096, 0).decode("utf-8", "replace")
