"""Atomic writes of files and directories: a crash never leaves a half-written artifact."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


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


def new_tmp_dir(final_dir: str | Path) -> Path:
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.", suffix=".tmp"))


# ---------------------------------------------------------------------- resumable training checkpoints

CHECKPOINT_PREFIX = "step-"
TRAINER_STATE = "trainer_state.json"


def fsync_tree(directory: str | Path) -> None:
    """Flush every file under ``directory`` (and the directory entries) to disk: a rename that
    publishes the directory must not reach the disk before its contents (power loss, not only kill -9)."""
    directory = Path(directory)
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for d in [*(p for p in directory.rglob("*") if p.is_dir()), directory]:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def checkpoint_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"{CHECKPOINT_PREFIX}{step:08d}"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first. A checkpoint is published by renaming its
    fully written temporary folder, so every ``step-*`` folder with a trainer state is complete;
    ``.tmp`` leftovers of a killed save are ignored."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX) and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def publish_checkpoint(tmp_dir: Path, final_dir: Path, keep: int) -> None:
    """fsync ``tmp_dir``, rename it to ``final_dir`` (replacing one of the same step), keep the newest ``keep``."""
    fsync_tree(tmp_dir)
    replace_dir(tmp_dir, final_dir)
    fd = os.open(final_dir.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in list_checkpoints(final_dir.parent)[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in final_dir.parent.glob(f".{CHECKPOINT_PREFIX}*.tmp"):
        if stale != tmp_dir:
            shutil.rmtree(stale, ignore_errors=True)
