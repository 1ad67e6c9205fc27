"""Writing files so that a reader never sees half of one, and naming their contents.

Every artifact writer (ONNX exports, manifests, TensorRT plans, training checkpoints and
weights) goes through :func:`atomic_write`: the data goes to a temporary file in the
target's folder, which replaces the target only once it is complete, so an interrupted
or failed write leaves the old file (or nothing) behind, never a truncated one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it becomes ``path``.

    The caller writes the temporary file by any means (``torch.save``, ``onnx.save``,
    ``open``); on an exception it is removed and ``path`` is left untouched. The file
    gets the usual umask-based mode (``mkstemp`` makes it 0600), since artifacts are read
    by other users (a Triton container, a gateway running as another uid).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
