"""Dedup codes, the SID table, the quantiser registry and quantiser config/state round trips."""

import json
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from genrec.tokenizer import (
    RQVAE,
    Quantizer,
    RandomIDs,
    RQKMeans,
    SIDTable,
    add_dedup_codes,
    build_tokenizer,
    quantizer_class,
    register_quantizer,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def test_dedup_codes_hand_case():
    codes = torch.tensor([[0, 0], [1, 2], [0, 0], [3, 3], [1, 2], [0, 0], [0, 1]])
    sids = add_dedup_codes(codes)
    assert sids[:, -1].tolist() == [0, 0, 1, 0, 1, 2, 0]
    assert torch.equal(sids[:, :2], codes)
    assert add_dedup_codes(torch.zeros(0, 3, dtype=torch.long)).shape == (0, 4)
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        add_dedup_codes(torch.zeros(5, dtype=torch.long))


def test_dedup_codes_match_a_loop_on_a_large_catalogue():
    codes = torch.randint(0, 4, (5000, 3), generator=torch.Generator().manual_seed(0))
    seen: dict[tuple, int] = {}
    expected = []
    for row in codes.tolist():  # the definition, one item at a time
        expected.append(seen.get(tuple(row), 0))
        seen[tuple(row)] = expected[-1] + 1
    sids = add_dedup_codes(codes)
    assert sids[:, -1].tolist() == expected
    assert torch.unique(sids, dim=0).shape[0] == 5000


def test_sid_table_lookups_and_round_trip(tmp_path):
    table = SIDTable.from_codes(["a", "b", "c", "d"], torch.tensor([[1, 1], [1, 1], [0, 2], [1, 1]]), (2, 3))
    assert table.codebook_sizes == (2, 3, 3)  # dedup level size = largest group (3)
    assert len(table) == 4 and table.depth == 3
    assert table.sid("b") == (1, 1, 1) and table.sid("d") == (1, 1, 2)
    assert table.item((0, 2, 0)) == "c" and table.item_index([1, 1, 2]) == 3 and table.index("c") == 2
    with pytest.raises(KeyError, match="unknown item id 'zz'"):
        table.sid("zz")
    with pytest.raises(KeyError, match=r"no item has SID \(0, 0, 0\)"):
        table.item((0, 0, 0))
    table.save(tmp_path)
    again = SIDTable.load(tmp_path)
    assert again.item_ids == table.item_ids and torch.equal(again.sids, table.sids) and again.codebook_sizes == table.codebook_sizes
    assert not list(tmp_path.glob("*.tmp"))
    no_collision = SIDTable.from_codes(["a", "b"], torch.tensor([[0], [1]]), (2,))
    assert no_collision.codebook_sizes == (2, 1)


def test_sid_table_errors(tmp_path):
    with pytest.raises(ValueError, match=r"2 duplicate SID\(s\); e\.g\. items \['a', 'c', 'd'\] share SID \[1, 1\]"):
        SIDTable(["a", "b", "c", "d"], torch.tensor([[1, 1], [0, 1], [1, 1], [1, 1]]))
    with pytest.raises(ValueError, match=r"out of range at level 1 \(size 3\): item 'b' has code 5"):
        SIDTable(["a", "b"], torch.tensor([[0, 0], [0, 5]]), (2, 3))
    with pytest.raises(ValueError, match="out of range at level 0"):
        SIDTable(["a"], torch.tensor([[-1, 0]]), (2, 3))
    with pytest.raises(ValueError, match=r"3 item ids but sids of shape \(2, 2\)"):
        SIDTable(["a", "b", "c"], torch.tensor([[0, 0], [0, 1]]))
    with pytest.raises(ValueError, match="2 levels but 3 codebook sizes"):
        SIDTable(["a"], torch.tensor([[0, 0]]), (2, 2, 2))
    with pytest.raises(ValueError, match=r"repeated item id\(s\), e\.g\. \['a'\]"):
        SIDTable(["a", "b", "a"], torch.tensor([[0], [1], [2]]))
    with pytest.raises(TypeError, match="row 1 is 7"):
        SIDTable(["a", 7], torch.tensor([[0], [1]]))
    SIDTable(["a", "b"], torch.tensor([[0], [1]])).save(tmp_path)
    meta = json.loads((tmp_path / "sid_items.json").read_text())
    (tmp_path / "sid_items.json").write_text(json.dumps({**meta, "item_ids": ["a"]}))
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}: SID table: 1 item ids but sids of shape (2, 1)")):
        SIDTable.load(tmp_path)
    (tmp_path / "sid_items.json").unlink()
    with pytest.raises(FileNotFoundError, match="sid_items.json"):
        SIDTable.load(tmp_path)


def test_registry_builds_by_name_and_accepts_new_quantizers():
    assert isinstance(build_tokenizer("random", codebook_sizes=(4, 4)), RandomIDs)
    assert isinstance(build_tokenizer("rq_kmeans", codebook_sizes=(4,)), RQKMeans)
    assert isinstance(build_tokenizer("rq_vae", input_dim=8, codebook_sizes=(4,)), RQVAE)
    with pytest.raises(ValueError, match=r"unknown tokenizer method 'nope'.*'random', 'rq_kmeans', 'rq_vae'"):
        build_tokenizer("nope")

    @register_quantizer("test_first_dim_sign")
    class FirstDimSign(Quantizer):
        codebook_sizes = (2,)

        def fit(self, x, regularizers=None, **kwargs):
            return {}

        def encode(self, x, batch_size=8192):
            return (x[:, :1] > 0).long()

    q = build_tokenizer("test_first_dim_sign")
    assert q.encode(torch.tensor([[1.0], [-1.0]])).tolist() == [[1], [0]]


@pytest.mark.parametrize("method", ["random", "rq_kmeans", "rq_vae"])
def test_config_and_state_dict_round_trip_through_json_and_safetensors(method, tmp_path):
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    extra = {"input_dim": 8, "hidden_dims": [16], "latent_dim": 4} if method == "rq_vae" else {}
    q = build_tokenizer(method, codebook_sizes=(8, 8), seed=5, **extra)
    q.fit(x, **({"epochs": 2, "batch_size": 64} if method == "rq_vae" else {}))
    config = json.loads(json.dumps(q.get_config()))  # JSON-able
    assert config["method"] == method and config["codebook_sizes"] == [8, 8] and config["seed"] == 5
    save_file({k: v.contiguous() for k, v in q.state_dict().items()}, tmp_path / "q.safetensors")
    loaded = quantizer_class(config["method"]).from_config(config)
    loaded.load_state_dict(load_file(tmp_path / "q.safetensors"))
    assert type(loaded) is type(q)
    assert torch.equal(loaded.encode(x), q.encode(x))


def test_rq_kmeans_state_is_validated():
    q = RQKMeans((4, 4))
    with pytest.raises(RuntimeError, match="not fitted"):
        q.encode(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="expected keys"):
        q.load_state_dict({"mean": torch.zeros(2)})
