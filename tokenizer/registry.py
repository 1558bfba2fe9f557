"""Quantisers by name, so configs choose them (``method: rq_vae``) and users can add their own."""

from __future__ import annotations

_QUANTIZERS: dict[str, type] = {}


def register_quantizer(name: str):
    """Class decorator: make a :class:`Quantizer` buildable as ``build_quantizer(name, **kwargs)``."""

    def wrap(cls):
        _QUANTIZERS[name] = cls
        cls.method = name
        return cls

    return wrap


def build_quantizer(method: str, **kwargs):
    if method not in _QUANTIZERS:
        raise ValueError(f"unknown tokenizer method '{method}'; available: {sorted(_QUANTIZERS)}")
    return _QUANTIZERS[method](**kwargs)


def quantizer_class(method: str) -> type:
    if method not in _QUANTIZERS:
        raise ValueError(f"unknown tokenizer method '{method}'; available: {sorted(_QUANTIZERS)}")
    return _QUANTIZERS[method]
