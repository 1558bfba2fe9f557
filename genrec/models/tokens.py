"""The token layout: :class:`genrec.vocab.TokenSpace` (one class for every model type; importable from here too)."""

from genrec.vocab import TokenSpace

__all__ = ["TokenSpace"]
