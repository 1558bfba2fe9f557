"""The quantiser interface a config-driven builder reads (trainable, takes_input_dim, learns_fusion, options)."""

import inspect
from pathlib import Path

import pytest

from genrec.tokenizer import (
    TRAINING_ARGUMENTS,
    FusedQuantizer,
    RQKMeans,
    TokenizerConfigError,
    build_quantizer_from_fields,
    quantizer_class,
    training_arguments,
)
from genrec.tokenizer.base import FIXED_ARGUMENTS
from genrec.tokenizer.fusion import SourceLayout, fusion_config

BUILT_IN = ["random", "rq_kmeans", "rq_vae", "fused"]
SETTINGS = {"epochs": 3, "batch_size": 8, "lr": 0.1, "weight_decay": 0.0, "device": "cpu", "log_every": 0}


@pytest.mark.parametrize("method", BUILT_IN)
def test_every_built_in_quantizer_declares_the_interface_and_it_matches_its_signatures(method):
    cls = quantizer_class(method)
    for name in ("trainable", "takes_input_dim", "learns_fusion", "options"):
        assert name in vars(cls), f"{cls.__name__} does not declare {name}"
    if method == "fused":
        return  # a wrapper: not built from options
    params = list(inspect.signature(cls.__init__).parameters)
    assert list(cls.options) == [p for p in params if p not in ("self", *FIXED_ARGUMENTS)]
    assert cls.takes_input_dim == ("input_dim" in params) and cls.learns_fusion == ("fusion" in params)
    fit = inspect.signature(cls.fit).parameters
    assert cls.trainable == (set(TRAINING_ARGUMENTS) <= set(fit))


def test_training_arguments_follow_trainable():
    rq_vae = build_quantizer_from_fields("rq_vae", [4, 4], 0, {"hidden_dims": [8], "latent_dim": 4}, input_dim=6)
    assert training_arguments(rq_vae, **SETTINGS) == {**SETTINGS, "show_progress": True}
    assert set(training_arguments(rq_vae, **SETTINGS)) == set(TRAINING_ARGUMENTS)
    assert training_arguments(build_quantizer_from_fields("rq_kmeans", [4], 0, {}, input_dim=6), **SETTINGS) == {}


def test_build_from_fields_wraps_quantizers_that_cannot_learn_a_fusion():
    fusion = fusion_config({}, SourceLayout(["a", "b"], [3, 2]))
    q = build_quantizer_from_fields("rq_kmeans", [4], 1, {"iters": 5}, input_dim=7, fusion=fusion)
    assert isinstance(q, FusedQuantizer) and isinstance(q.inner, RQKMeans) and not q.trainable
    assert q.inner.iters == 5 and q.get_config()["fusion"]["learned_placeholder"] is False
    learned = build_quantizer_from_fields("rq_vae", [4], 1, {"hidden_dims": [8]}, input_dim=7, fusion=fusion)
    assert learned.fusion is not None and learned.trainable
    with pytest.raises(TokenizerConfigError, match=r"^quantizer: unknown argument\(s\) \['nope'\] for method 'rq_kmeans'"):
        build_quantizer_from_fields("rq_kmeans", [4], 1, {"nope": 1}, input_dim=7)
    with pytest.raises(TokenizerConfigError, match="^fusion: method 'random' cannot learn a fusion"):
        build_quantizer_from_fields("random", [4], 1, {}, input_dim=7, fusion={**fusion, "learned_placeholder": True})
    with pytest.raises(ValueError, match="not built from options"):
        FusedQuantizer.from_options(codebook_sizes=[4], seed=0)


def test_the_recipe_reads_no_signatures():
    source = (Path(__file__).resolve().parents[1] / "recipes" / "train_tokenizer.py").read_text()
    assert "inspect" not in source
