"""Loading helpers shared by every genrec Hub artifact (SID tokenizers, recommender bundles).

Artifacts are JSON + safetensors only: folders and Hub repos holding pickle-based files are refused
before anything is read, and a Hub snapshot downloads only the artifact's own file patterns after
the repo's file list has been checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def refuse_pickles(names: Iterable[str], where: str, what: str = "artifacts") -> None:
    """Raise a ValueError naming every pickle-based file among ``names`` (paths inside ``where``)."""
    found = sorted(n for n in names if n.lower().endswith(PICKLE_SUFFIXES))
    if found:
        raise ValueError(f"{where} holds pickle-based file(s) {found}: genrec loads {what} from safetensors and JSON "
                         "only and refuses folders/repos with pickles (they can execute code when loaded). Remove them.")


def refuse_pickles_in_folder(folder: Path, what: str = "artifacts", where: str | None = None) -> None:
    """:func:`refuse_pickles` over every file below ``folder``."""
    refuse_pickles([str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()], where or str(folder), what)


CONFIG_SUFFIX = ".json"


def refuse_code(folder: str | Path, what: str = "models") -> None:
    """Raise a ValueError naming the file when ``folder`` could make transformers run code.

    A ``.py`` file anywhere below it, or an ``auto_map`` in any JSON file (how a config asks
    ``trust_remote_code`` loading for a custom class): genrec loads only its own and transformers'
    built-in classes, with ``trust_remote_code=False``, and refuses such folders outright rather than
    leave the question to a prompt.
    """
    folder = Path(folder)
    scripts = sorted(p for p in folder.rglob("*.py") if p.is_file())
    if scripts:
        raise ValueError(f"{scripts[0]}: a Python file in a {what} folder; genrec never runs code shipped with {what} "
                         "(loading reads JSON and safetensors only). Remove it.")
    for path in sorted(folder.rglob(f"*{CONFIG_SUFFIX}")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue  # not a config this check can read; the loader reports a broken file itself
        if isinstance(data, dict) and "auto_map" in data:
            raise ValueError(f"{path}: 'auto_map' asks to load custom code ({sorted(data['auto_map'])[:3]}); genrec loads "
                             f"only built-in model classes and never runs code shipped with {what}. Remove the entry.")


def check_loadable_folder(folder: str | Path, what: str = "models") -> None:
    """Neither pickles (:func:`refuse_pickles_in_folder`) nor code (:func:`refuse_code`) in ``folder``."""
    refuse_pickles_in_folder(Path(folder), what)
    refuse_code(folder, what)


def download_snapshot(repo_id: str, *, required: Sequence[str], allow_patterns: Sequence[str], what: str, revision=None,
                      cache_dir=None, force_download: bool = False, token=None, local_files_only: bool = False) -> Path:
    """Local folder with ``allow_patterns`` of Hub repo ``repo_id``, after checking its file list.

    The list must hold every ``required`` file and no pickle; offline (``HF_HUB_OFFLINE=1``) the list
    cannot be fetched and the cached snapshot is used as is (the caller checks its files on load).
    """
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import HFValidationError, OfflineModeIsEnabled
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise FileNotFoundError(f"{repo_id!r} is neither a local folder nor a valid Hub repo id ({e})") from e
    api = HfApi(token=token)
    resolved = api.resolve_revision(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
    if not local_files_only:
        try:
            files = api.list_repo_files(repo_id, revision=resolved.resolved, token=token)
        except OfflineModeIsEnabled:
            files = None
        if files is not None:
            where = f"Hub repo {repo_id}@{resolved.resolved}"
            refuse_pickles(files, where, what)
            for name in required:
                if name not in files:
                    raise FileNotFoundError(f"{where}: missing file {name}")
    folder = snapshot_download(repo_id, revision=resolved, allow_patterns=list(allow_patterns), cache_dir=cache_dir,
                               force_download=force_download, token=token, local_files_only=local_files_only)
    return Path(folder)
