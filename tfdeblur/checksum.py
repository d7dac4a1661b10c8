"""SHA-256 sidecars for the `.keras` files `train` writes (issue #16).

`model.keras` gets `model.keras.sha256`, one line in `sha256sum` format
(`sha256sum -c model.keras.sha256` checks it too). The loaders verify it;
a file without a sidecar (one from elsewhere, or from an older tfdeblur)
loads as before. Shipped weights carry their digest in their manifest.
"""
import contextlib
import os

from tfdeblur import io as tio
from tfdeblur.weights import sha256_of

SUFFIX = ".sha256"


def sidecar_path(path):
    return os.fspath(path) + SUFFIX


@contextlib.contextmanager
def atomic_path(path):
    """`with atomic_path(path) as tmp:` write the file at `tmp`; it takes
    `path`'s place atomically (`tfdeblur.io.atomic_path`) and its digest is
    recorded beside it.

    The old sidecar goes first and the new one comes last, so a kill at any
    point leaves either a matching pair or a file without a sidecar (which
    loads unchecked), never a new file beside an old digest."""
    path = os.fspath(path)
    side = sidecar_path(path)
    with tio.atomic_path(path) as tmp:
        yield tmp
        digest = sha256_of(tmp)
        if os.path.lexists(side):
            os.remove(side)
    tio.atomic_write(side, f"{digest}  {os.path.basename(path)}\n")


def verify(path, arg="`path`"):
    """Raises a one-line `ValueError` naming `path` when its sidecar exists
    and records another digest (a damaged, truncated or edited file)."""
    path = os.fspath(path)
    side = sidecar_path(path)
    if not os.path.isfile(side):
        return
    with open(side) as f:
        fields = f.read().split()
    recorded = fields[0].lower() if fields else ""
    if len(recorded) != 64 or any(c not in "0123456789abcdef" for c in recorded):
        raise ValueError(f"{arg} {path}: its checksum file {side} is damaged (no sha256 digest in it)")
    actual = sha256_of(path)
    if actual != recorded:
        raise ValueError(f"{arg} {path}: checksum mismatch (sha256 {actual[:12]}..., {side} records "
                         f"{recorded[:12]}...): the file is damaged or was changed")
