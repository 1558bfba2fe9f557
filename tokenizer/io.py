"""Atomic writes of files and folders: a crash (or kill -9) never leaves a half-written file under its final name.

This is genrec's one atomic-write module. It lives in ``genrec.tokenizer`` because that is the lowest
layer (it imports nothing from the rest of genrec), so every other part can use it;
``genrec.training.checkpoint`` re-exports it.

Files: the content goes to a temporary file in the target's folder (same file system, so the final
``os.replace`` is an atomic rename), is flushed to disk (``fsync``) and is then renamed over the
target. Readers see the old file or the new one, never a mix. Temporary names are
``.<name>.<random>.tmp``; a failed write removes its temporary file. Files get ``mkstemp``'s mode 0600
unless ``mode`` is given (e.g. 0o644 for a cache that other users read).

Folders: :func:`new_tmp_dir` + :func:`replace_dir` swap a fully written folder in for an old one
(the old one is deleted); :func:`publish_dir` moves a staged folder's files into a target folder
that may hold other files (they are kept).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from safetensors.torch import save_file


def atomic_write_file(path: str | Path, write: Callable[[str], None], mode: int | None = None) -> None:
    """Write ``path`` atomically with ``write(tmp_path)``, a function that writes the whole file at ``tmp_path``.

    For writers that take a file name (e.g. ``safetensors.torch.save_file``; the temporary name ends
    in ``.tmp``, so writers that infer a format from the suffix need it given). The temporary file is
    flushed to disk before it is renamed to ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:  # the rename must not reach the disk before the data
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` atomically (the platform's default encoding, as ``open(path, "w")``)."""
    atomic_write_file(path, lambda tmp: Path(tmp).write_text(text), mode)


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write_file(path, lambda tmp: Path(tmp).write_bytes(data), mode)


def atomic_write_json(path: str | Path, obj, mode: int | None = None) -> None:
    """Write ``obj`` as JSON to ``path`` atomically: ``indent=2``, keys sorted, ASCII, a trailing newline."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", mode=mode)


def atomic_save_json(obj, path: str | Path) -> None:
    """:func:`atomic_write_json` with the arguments the other way round (object first)."""
    atomic_write_json(path, obj)


def atomic_save_safetensors(tensors: dict, path: str | Path, metadata: dict | None = None) -> None:
    """Save ``{name: tensor}`` (made contiguous) as a safetensors file at ``path`` atomically; ``metadata``: str -> str."""
    atomic_write_file(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata))


# ---------------------------------------------------------------------------------------------- folders
def new_tmp_dir(final_dir: str | Path) -> Path:
    """A new, empty temporary folder next to ``final_dir`` (``.<name>.<random>.tmp``, mode 0700) to write it in."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.", suffix=".tmp"))


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written ``tmp_dir`` to ``final_dir``, replacing an existing one.

    Directories cannot be swapped atomically with ``os.replace`` when the target exists, so the
    old one is first renamed aside; at every instant either the old or the new directory is
    complete under a known name (``final_dir`` or ``final_dir.old``).
    """
    final_dir = Path(final_dir)
    old = final_dir.with_name(final_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)


def publish_dir(staging: str | Path, target: str | Path, names: Iterable[str]) -> None:
    """Publish the files ``names`` written in the folder ``staging`` as ``target``, keeping other files in ``target``.

    A missing or empty ``target`` is replaced by ``staging`` in one rename, so readers see all files or
    none. Into a non-empty folder (e.g. a run folder with logs) each file is renamed on its own, in the
    order of ``names`` (put the file that marks completeness last); unlike :func:`replace_dir`, the
    folder's other files stay. ``staging`` must be on the same file system (next to ``target``); what
    is left of it afterwards is the caller's to remove.
    """
    staging, target = Path(staging), Path(target)
    if not target.exists() or not any(target.iterdir()):
        os.replace(staging, target)
    else:
        for name in names:
            os.replace(staging / name, target / name)


__all__ = ["atomic_save_json", "atomic_save_safetensors", "atomic_write_bytes", "atomic_write_file", "atomic_write_json",
           "atomic_write_text", "new_tmp_dir", "publish_dir", "replace_dir"]
