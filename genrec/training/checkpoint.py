"""Resumable training checkpoints and run folders, written atomically: a crash never leaves a half-written artifact.

The atomic file and folder writes themselves (``atomic_write_text``, ``atomic_write_json``,
``atomic_write_bytes``, ``new_tmp_dir``, ``replace_dir``) live in :mod:`genrec.tokenizer.io`, the
lowest layer, and are re-exported here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
from pathlib import Path

from genrec.tokenizer.io import (  # noqa: F401  re-exported: genrec's one atomic-write module
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    new_tmp_dir,
    replace_dir,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- resumable training checkpoints

CHECKPOINT_PREFIX = "step-"
CHECKPOINT_NAME = re.compile(r"step-\d{8}")
TMP_NAME = re.compile(r"\.step-\d{8}\..*tmp")
TRAINER_STATE = "trainer_state.json"
LOCK_FILE = ".genrec.lock"


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
    found = [p for p in root.iterdir() if p.is_dir() and CHECKPOINT_NAME.fullmatch(p.name) and (p / TRAINER_STATE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def remove_checkpoints(root: str | Path) -> list[Path]:
    """Delete the checkpoints genrec wrote under ``root`` (``step-NNNNNNNN`` folders and ``.step-*.tmp``
    leftovers); anything else there is kept and returned (a fresh run never deletes other files)."""
    root = Path(root)
    if not root.is_dir():
        return []
    kept = []
    for path in sorted(root.iterdir()):
        ours = path.is_dir() and (CHECKPOINT_NAME.fullmatch(path.name) or TMP_NAME.fullmatch(path.name))
        if ours:
            shutil.rmtree(path)
        else:
            kept.append(path)
    if not kept:
        root.rmdir()
    return kept


RUN_FOLDER_MARKERS = ("token_space.json", "train_history.json", "learning_curve.csv", "checkpoints", "best", LOCK_FILE)


def check_output_dir(folder: str | Path) -> None:
    """Refuse to train into a non-empty folder that holds no genrec run (its files would be overwritten).

    A genrec run folder has at least one of :data:`RUN_FOLDER_MARKERS`; a new or empty folder is fine.
    """
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if not any((folder / name).exists() for name in RUN_FOLDER_MARKERS):
        found = sorted(p.name for p in folder.iterdir())[:5]
        raise FileExistsError(f"output_dir {folder} is not empty and holds no genrec run ({found}); genrec would overwrite "
                              "files there: choose a new or empty folder")


class RunLock:
    """An exclusive lock on a run folder (``.genrec.lock``, ``fcntl.flock``) for as long as a run trains in it.

    A second run on the same ``output_dir`` fails at once instead of pruning or overwriting the
    first one's checkpoints. The operating system releases the lock when the process ends, however it
    ends, so a killed run never leaves a stale lock. ``enabled=False`` (processes other than the
    main one) does nothing. Where ``fcntl`` is missing (Windows) the lock is skipped with a warning.
    """

    def __init__(self, folder: str | Path, enabled: bool = True):
        self.path = Path(folder) / LOCK_FILE
        self.enabled = enabled
        self._file = None

    def __enter__(self) -> RunLock:
        if not self.enabled:
            return self
        try:
            import fcntl
        except ImportError:
            logger.warning("no fcntl on this platform: %s is not locked against a second run", self.path.parent)
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            self._file = None
            raise RuntimeError(f"{self.path.parent} is in use by another training run ({holder}); give this run another "
                               "output_dir, or wait for that one to finish") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self._file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None


def rng_fingerprint() -> str:
    """A digest of this process's Python, NumPy and torch RNG states (to check that a resume restored them)."""
    import random

    import numpy as np
    import torch

    digest = hashlib.sha256()
    digest.update(repr(random.getstate()).encode())
    state = np.random.get_state()
    digest.update(state[1].tobytes() + repr((state[0], *state[2:])).encode())
    digest.update(torch.get_rng_state().numpy().tobytes())
    return digest.hexdigest()


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
    for stale in final_dir.parent.glob(f".{CHECKPOINT_PREFIX}*tmp"):
        if stale != tmp_dir and TMP_NAME.fullmatch(stale.name):
            shutil.rmtree(stale, ignore_errors=True)
