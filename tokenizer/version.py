"""The installed genrec version, for artifacts written by the tokenizer (``genrec_version``).

``genrec.tokenizer`` imports nothing from genrec's core, so it reads the version from the installed
distribution's metadata (which ``pyproject.toml``'s ``version`` sets, as it does ``genrec.__version__``)
instead of importing ``genrec``.
"""

from __future__ import annotations

from importlib import metadata

UNKNOWN_VERSION = "0+unknown"  # running from a source tree that was never installed


def genrec_version() -> str:
    """The version of the installed ``genrec`` distribution, e.g. ``"0.1.0"``; ``"0+unknown"`` if it is not installed."""
    try:
        return metadata.version("genrec")
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


__all__ = ["UNKNOWN_VERSION", "genrec_version"]
