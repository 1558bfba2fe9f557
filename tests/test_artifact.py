"""SIDTokenizer as an artifact: save/load round trips, corrupted folders, cold-start encoding, and a push to a
local Hub server with the real huggingface_hub client (tests/hub_server.py)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from genrec.tokenizer import RQVAE, RandomIDs, RQKMeans, SIDTable
from genrec.tokenizer.artifact import CONFIG_FILE, QUANTIZER_FILE, ColdStartEncoding, SIDTokenizer
from tests.hub_server import HubServer

DIM = 12
ARTIFACT_FILES = ("README.md", CONFIG_FILE, QUANTIZER_FILE, "sid_table.safetensors", "sid_items.json")


def catalogue(n: int = 240, seed: int = 0) -> tuple[list[str], torch.Tensor]:
    """Clustered embeddings with planted exact duplicates (rows 1, 2 copy row 0), so some items share all codes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(16, DIM, generator=g) * 3
    x = centres[torch.randint(16, (n,), generator=g)] + 0.3 * torch.randn(n, DIM, generator=g)
    x[1] = x[0]
    x[2] = x[0]
    return [f"item-{i}" for i in range(n)], x


def fitted(method: str, x: torch.Tensor):
    if method == "random":
        return RandomIDs((4, 4, 4), seed=3)
    if method == "rq_kmeans":
        q = RQKMeans((4, 4), seed=0)
        q.fit(x)
        return q
    q = RQVAE(DIM, codebook_sizes=(4, 4), latent_dim=4, hidden_dims=(16,), seed=0)
    q.fit(x, epochs=2, batch_size=128)
    return q


def build(method: str = "rq_kmeans") -> tuple[SIDTokenizer, torch.Tensor]:
    ids, x = catalogue()
    tok = SIDTokenizer.from_quantizer(fitted(method, x), ids, x, embedding_model="all-MiniLM-L6-v2",
                                      text_template="{title} | {brand}", regularizers=[{"name": "none"}],
                                      training_data="synthetic catalogue: 240 items, 16 clusters, 3 planted duplicates")
    return tok, x


@pytest.fixture(scope="module")
def rq_kmeans_tokenizer():
    return build("rq_kmeans")


def new_items(n: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("method", ["random", "rq_kmeans", "rq_vae"])
def test_save_load_round_trip_is_exact(tmp_path, method):
    tok, x = build(method)
    assert len(tok) == 240 and tok.codebook_sizes[:-1] == tuple(tok.quantizer.codebook_sizes)
    assert torch.equal(tok.sids[:, :-1], tok.quantizer.encode(x))  # the table holds the quantiser's codes
    saved = tok.save_pretrained(tmp_path / "tok")
    assert sorted(os.listdir(saved)) == sorted(ARTIFACT_FILES)

    loaded = SIDTokenizer.from_pretrained(saved)
    assert loaded.item_ids == tok.item_ids and loaded.codebook_sizes == tok.codebook_sizes
    assert torch.equal(loaded.sids, tok.sids) and loaded.sids.dtype == torch.int64
    assert all(loaded.sid(i) == tok.sid(i) for i in tok.item_ids)
    assert loaded.config == tok.config
    # The reloaded quantiser reproduces every catalogue item's codes and every cold-start SID.
    assert torch.equal(loaded.quantizer.encode(x), tok.sids[:, :-1])
    new = new_items()
    a, b = tok.encode(new), loaded.encode(new)
    assert torch.equal(a.sids, b.sids) and a.codebook_sizes == b.codebook_sizes

    # Saving the reloaded tokenizer writes the same bytes: the table (and everything else) survives bit for bit.
    again = loaded.save_pretrained(tmp_path / "again")
    for name in ARTIFACT_FILES:
        assert (again / name).read_bytes() == (saved / name).read_bytes(), name
    assert load_file(saved / "sid_table.safetensors")["sids"].numpy().tobytes() == tok.sids.numpy().tobytes()


def test_config_and_model_card_describe_the_tokenizer(tmp_path, rq_kmeans_tokenizer):
    tok, _ = rq_kmeans_tokenizer
    saved = tok.save_pretrained(tmp_path / "tok")
    config = json.loads((saved / CONFIG_FILE).read_text())
    assert config["format_version"] == 1 and config["method"] == "rq_kmeans"
    assert config["codebook_sizes"] == [4, 4] and config["sid_codebook_sizes"] == list(tok.codebook_sizes)
    assert config["num_items"] == 240 and config["embedding_dim"] == DIM
    assert config["embedding_model"] == "all-MiniLM-L6-v2" and config["text_template"] == "{title} | {brand}"
    assert config["regularizers"] == [{"name": "none"}] and config["standardization"]["tensors"] == ["mean", "std"]
    assert config["metrics"]["collision_rate"] == pytest.approx(tok.metrics["collision_rate"])

    from huggingface_hub import ModelCard

    card = ModelCard.load(saved / "README.md")
    assert card.data.library_name == "genrec"
    assert {"semantic-ids", "recommendation"} <= set(card.data.tags)
    assert card.data.to_dict()["tokenizer_metrics"]["collision_rate"] == pytest.approx(tok.metrics["collision_rate"])
    assert "3 planted duplicates" in card.data.to_dict()["training_data"] and "3 planted duplicates" in card.text


def test_save_is_atomic(tmp_path, rq_kmeans_tokenizer, monkeypatch):
    tok, _ = rq_kmeans_tokenizer
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train.log").write_text("kept")
    tok.save_pretrained(run_dir)  # an existing folder with other files: they stay
    assert (run_dir / "train.log").read_text() == "kept" and (run_dir / CONFIG_FILE).is_file()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}

    import genrec.tokenizer.artifact as artifact

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(artifact, "build_model_card", broken_card)
    for target in (run_dir, tmp_path / "fresh"):
        with pytest.raises(RuntimeError, match="disk full"):
            tok.save_pretrained(target)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # nothing half-written
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folders left behind


def _break(folder: Path, case: str) -> None:
    table = folder / "sid_table.safetensors"
    if case == "missing_file":
        (folder / "sid_items.json").unlink()
    elif case == "wrong_version":
        config = json.loads((folder / CONFIG_FILE).read_text())
        config["format_version"] = 99
        (folder / CONFIG_FILE).write_text(json.dumps(config))
    elif case == "truncated_table":
        table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    elif case == "truncated_weights":
        weights = folder / QUANTIZER_FILE
        weights.write_bytes(weights.read_bytes()[:-40])
    elif case == "truncated_config":
        (folder / CONFIG_FILE).write_text((folder / CONFIG_FILE).read_text()[:50])
    elif case == "fewer_ids":
        items = json.loads((folder / "sid_items.json").read_text())
        items["item_ids"] = items["item_ids"][:-1]
        (folder / "sid_items.json").write_text(json.dumps(items))
    elif case in ("duplicate_sids", "out_of_range"):
        sids = load_file(table)["sids"]
        if case == "duplicate_sids":
            sids[5] = sids[9]
        else:
            sids[3, 0] = 99
        save_file({"sids": sids}, table)
    elif case == "unknown_method":
        config = json.loads((folder / CONFIG_FILE).read_text())
        config["quantizer_config"]["method"] = "my_custom_code"
        (folder / CONFIG_FILE).write_text(json.dumps(config))
    elif case == "wrong_weights":
        save_file({"mean": torch.zeros(DIM)}, folder / QUANTIZER_FILE)
    elif case == "pickle":
        torch.save({"w": torch.zeros(2)}, folder / "pytorch_model.bin")
    elif case == "nan_weights":
        weights = load_file(folder / QUANTIZER_FILE)
        name = next(k for k, v in weights.items() if v.is_floating_point() and v.numel() > 1)
        weights[name][0] = float("nan")
        save_file(weights, folder / QUANTIZER_FILE)
    elif case == "huge_codebooks":  # a tampered config: the sizes must be checked before anything is allocated
        config = json.loads((folder / CONFIG_FILE).read_text())
        config["quantizer_config"]["codebook_sizes"] = [4, 2**40]
        (folder / CONFIG_FILE).write_text(json.dumps(config))
    elif case == "nested_pickle":
        (folder / "extra").mkdir()
        (folder / "extra" / "weights.pkl").write_bytes(b"\x80\x04K\x01.")


BAD_CASES = {
    "missing_file": (FileNotFoundError, r"missing file sid_items\.json"),
    "wrong_version": (ValueError, r"sid_tokenizer_config\.json: unsupported format_version 99"),
    "truncated_table": (ValueError, r"sid_table\.safetensors: cannot read safetensors"),
    "truncated_weights": (ValueError, r"quantizer\.safetensors: cannot read safetensors"),
    "truncated_config": (ValueError, r"sid_tokenizer_config\.json: not valid JSON"),
    "fewer_ids": (ValueError, r"sid_table\.safetensors: 240 SID rows and 239 ids in sid_items\.json, but .* num_items=240"),
    "duplicate_sids": (ValueError, r"sid_table\.safetensors: .*1 duplicate SID\(s\); e\.g\. items \['item-5', 'item-9'\]"),
    "out_of_range": (ValueError, r"sid_table\.safetensors: .*out of range at level 0"),
    "unknown_method": (ValueError, r"sid_tokenizer_config\.json: cannot build quantiser 'my_custom_code'"),
    "wrong_weights": (ValueError, r"quantizer\.safetensors: weights do not fit the 'rq_kmeans' quantiser"),
    "pickle": (ValueError, r"pickle-based file\(s\) \['pytorch_model\.bin'\]"),
    "nested_pickle": (ValueError, r"pickle-based file\(s\) \['extra/weights\.pkl'\]"),
    "nan_weights": (ValueError, r"quantizer\.safetensors: tensor\(s\) \[.*\] hold NaN or infinite values"),
    "huge_codebooks": (ValueError, r"weights do not fit the 'rq_kmeans' quantiser.*expected \(1099511627776, 12\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_broken_artifacts_get_clear_errors(tmp_path, rq_kmeans_tokenizer, case):
    tok, _ = rq_kmeans_tokenizer
    folder = tok.save_pretrained(tmp_path / "tok")
    SIDTokenizer.from_pretrained(folder)  # intact: loads
    _break(folder, case)
    error, message = BAD_CASES[case]
    with pytest.raises(error, match=message):
        SIDTokenizer.from_pretrained(folder)


def test_not_a_folder_nor_a_repo_id(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a valid Hub repo id"):
        SIDTokenizer.from_pretrained(tmp_path / "does" / "not" / "exist")


def test_cold_start_never_reuses_a_sid(tmp_path, caplog):
    tok, x = build("rq_kmeans")
    planted = tok.sid("item-0")[:-1]
    group = [i for i in tok.item_ids if tok.sid(i)[:-1] == planted]
    assert {"item-0", "item-1", "item-2"} <= set(group)  # the planted duplicates share all quantiser codes
    largest = max(int((tok.sids[:, :-1] == row).all(dim=1).sum()) for row in tok.sids[:, :-1])
    assert tok.codebook_sizes[-1] == largest

    # Copies of item-0 (same codes as its whole group, enough to overflow the dedup level) + items from elsewhere.
    copies = largest - len(group) + 2
    x_new = torch.cat([x[0:1].repeat(copies, 1), new_items(5)])
    n_new = copies + 5
    existing = {tuple(s) for s in tok.sids.tolist()}
    with caplog.at_level(logging.WARNING, logger="genrec.tokenizer.artifact"):
        out = tok.encode(x_new)
    assert isinstance(out, ColdStartEncoding) and out.sids.shape == (n_new, 3)
    assert torch.equal(out.sids[:, :-1], tok.quantizer.encode(x_new))  # codes come from the quantiser
    assert out.sids[:copies, -1].tolist() == list(range(len(group), len(group) + copies))  # numbering continues
    assert not existing & {tuple(s) for s in out.sids.tolist()}
    assert len({tuple(s) for s in out.sids.tolist()}) == n_new
    assert torch.equal(tok.encode(x_new).sids, out.sids) and len(tok) == 240  # deterministic, table unchanged
    assert out.dedup_grown_from == largest and out.codebook_sizes[-1] == largest + 2
    assert tok.codebook_sizes[-1] == largest and "dedup level grows" in caplog.text

    new_ids = [f"new-{i}" for i in range(n_new)]
    added = tok.encode(x_new, item_ids=new_ids, add_to_table=True)
    assert torch.equal(added.sids, out.sids) and len(tok) == 240 + n_new
    assert tok.codebook_sizes == added.codebook_sizes
    assert tok.sid("new-1") == tuple(out.sids[1].tolist()) and tok.item(out.sids[1].tolist()) == "new-1"
    again = tok.encode(x_new[:2])  # after adding, the next free codes move on again
    assert again.sids[:, -1].tolist() == [len(group) + copies, len(group) + copies + 1]

    with pytest.raises(ValueError, match=r"already have a SID in the table, e\.g\. \['new-0'\]"):
        tok.encode(x_new[:1], item_ids=["new-0"], add_to_table=True)
    with pytest.raises(ValueError, match="needs the new items' ids"):
        tok.encode(x_new[:1], add_to_table=True)
    with pytest.raises(ValueError, match=r"must be \(M, 12\)"):
        tok.encode(torch.zeros(2, 5))

    loaded = SIDTokenizer.from_pretrained(tok.save_pretrained(tmp_path / "grown"))
    assert loaded.item_ids[-n_new:] == new_ids and torch.equal(loaded.sids, tok.sids)
    assert loaded.codebook_sizes == tok.codebook_sizes


def test_cold_start_continues_after_gaps_and_random_ids_take_new_rows():
    ids, x = catalogue(n=40)
    q = RQKMeans((4, 4), seed=0)
    q.fit(x)
    codes = q.encode(x)
    # A tampered-but-valid table: item 0's code group holds dedup codes {0, 5, 2}; a new member must get 6.
    same = set((codes == codes[0]).all(dim=1).nonzero().flatten().tolist())
    kept = [i for i in range(40) if i == 0 or i not in same]
    base = SIDTable.from_codes([ids[i] for i in kept], codes[kept], (4, 4))
    extra = torch.cat([codes[:1].repeat(2, 1), torch.tensor([[5], [2]])], dim=1)
    table = SIDTable(base.item_ids + ["g1", "g2"], torch.cat([base.sids, extra]), (4, 4, max(6, base.codebook_sizes[-1])))
    tok = SIDTokenizer(q, table, embedding_dim=DIM)
    assert tok.encode(x[:1]).sids[0].tolist() == codes[0].tolist() + [6]

    rand = SIDTokenizer.from_quantizer(RandomIDs((4, 4, 4), seed=1), ids, x)
    new = rand.encode(new_items(3))
    assert torch.equal(new.sids[:, :-1], RandomIDs((4, 4, 4), seed=1).encode(torch.zeros(43, DIM))[40:])


CLIENT_SCRIPT = r"""
import json, sys, torch
from huggingface_hub import HfApi
from safetensors.torch import save_file
from genrec.tokenizer.artifact import SIDTokenizer

local, out, probe_path = sys.argv[1:4]
probe = torch.load(probe_path, weights_only=True)
result = {}
tok = SIDTokenizer.from_pretrained(local)
commit = tok.push_to_hub("genrec-test/beauty-sid")
result["commit"] = commit.oid
loaded = SIDTokenizer.from_pretrained("genrec-test/beauty-sid")
by_commit = SIDTokenizer.from_pretrained("genrec-test/beauty-sid", revision=commit.oid)
cached = SIDTokenizer.from_pretrained("genrec-test/beauty-sid", local_files_only=True)
save_file({"sids": loaded.sids, "by_commit": by_commit.sids, "cached": cached.sids, "encoded": loaded.encode(probe).sids},
          out + "/loaded.safetensors")
result["item_ids"] = loaded.item_ids
result["config"] = loaded.config

api = HfApi()
def error_of(repo_id):
    try:
        SIDTokenizer.from_pretrained(repo_id)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None
api.upload_file(path_or_fileobj=b"\x80\x04K\x01.", path_in_repo="pytorch_model.bin", repo_id="genrec-test/beauty-sid")
result["pickle_error"] = error_of("genrec-test/beauty-sid")
tok.push_to_hub("genrec-test/partial")
api.delete_file("sid_table.safetensors", repo_id="genrec-test/partial")
result["missing_error"] = error_of("genrec-test/partial")
result["no_repo_error"] = error_of("genrec-test/no-such-repo")
json.dump(result, open(out + "/result.json", "w"))
"""


@pytest.mark.slow
def test_push_to_hub_and_load_back_with_the_real_client(tmp_path, rq_kmeans_tokenizer):
    tok, _ = rq_kmeans_tokenizer
    local = tok.save_pretrained(tmp_path / "local")
    probe = new_items(9, seed=5)
    torch.save(probe, tmp_path / "probe.pt")
    (tmp_path / "client.py").write_text(CLIENT_SCRIPT)
    with HubServer(tmp_path / "hub") as hub:
        # A fresh interpreter, so huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE from the environment at import.
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("HF_")}
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN="hf_dummy_test_token", HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="0",
                   HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1", NO_PROXY="127.0.0.1")
        run = subprocess.run([sys.executable, str(tmp_path / "client.py"), str(local), str(tmp_path), str(tmp_path / "probe.pt")],
                             env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-4000:]
        stored = hub.files("genrec-test/beauty-sid")
        requests = list(hub.requests)

    result = json.loads((tmp_path / "result.json").read_text())
    # What the server stored is byte-identical to the local save (safetensors went through LFS, JSON inline).
    first_commit = {k: v for k, v in stored.items() if k != "pytorch_model.bin"}
    assert set(first_commit) == {".gitattributes", *ARTIFACT_FILES}
    for name in ARTIFACT_FILES[1:]:
        assert stored[name] == (local / name).read_bytes(), name
    assert "model_name: genrec-test/beauty-sid" in stored["README.md"].decode()  # the card names the repo
    assert ("POST", "/genrec-test/beauty-sid.git/info/lfs/objects/batch") in requests
    assert ("POST", "/api/models/genrec-test/beauty-sid/commit/main") in requests
    assert any(m == "HEAD" and p.startswith("/genrec-test/beauty-sid/resolve/") for m, p in requests)

    # Loading the repo reproduces the tokenizer: same table bit for bit, same config, same cold-start SIDs.
    loaded = load_file(tmp_path / "loaded.safetensors")
    assert loaded["sids"].numpy().tobytes() == tok.sids.numpy().tobytes()
    assert torch.equal(loaded["by_commit"], tok.sids) and torch.equal(loaded["cached"], tok.sids)
    assert torch.equal(loaded["encoded"], tok.encode(probe).sids)
    assert result["item_ids"] == tok.item_ids and result["config"] == json.loads(json.dumps(tok.config))

    assert result["pickle_error"].startswith("ValueError") and "['pytorch_model.bin']" in result["pickle_error"]
    assert result["missing_error"].startswith("FileNotFoundError") and "missing file sid_table.safetensors" in result["missing_error"]
    assert result["no_repo_error"] is not None and "RepositoryNotFound" in result["no_repo_error"]


# ---- multimodal (fused) tokenizers: docs/multimodal.md ----------------------------------------------------
FUSION_SOURCES = [{"name": "text", "dim": DIM}, {"name": "attrs", "dim": 5}]


def fused_catalogue(n: int = 240) -> tuple[list[str], torch.Tensor]:
    """The synthetic catalogue plus a 5-value multi-hot source missing for every 7th item, packed."""
    from genrec.tokenizer.fusion import pack_sources

    ids, x = catalogue(n)
    attrs = torch.nn.functional.one_hot(torch.arange(n) % 5, 5).float()
    return ids, pack_sources(values=[x, attrs], present=[torch.ones(n, dtype=torch.bool), torch.arange(n) % 7 != 0])


@pytest.mark.parametrize("method", ["rq_vae-concat", "rq_vae-projection", "fused-rq_kmeans", "fused-random"])
def test_fused_tokenizers_save_and_load_with_their_fusion(tmp_path, method):
    from genrec.tokenizer import FusedQuantizer

    ids, x = fused_catalogue()
    if method.startswith("rq_vae"):
        kind = method.split("-")[1]
        fusion = {"type": kind, "sources": FUSION_SOURCES, **({"dim": 8} if kind == "projection" else {})}
        q = RQVAE(x.shape[1], codebook_sizes=(4, 4), latent_dim=4, hidden_dims=(16,), seed=0, fusion=fusion)
        q.fit(x, epochs=2, batch_size=128)
    else:
        inner = RQKMeans((4, 4), seed=0) if method.endswith("rq_kmeans") else RandomIDs((4, 4, 4), seed=3)
        q = FusedQuantizer({"type": "concat", "sources": FUSION_SOURCES, "learned_placeholder": False}, inner)
        q.fit(x)
    record = {"sources": [{"name": "text", "kind": "vectors"}, {"name": "attrs", "kind": "attributes", "vocabulary": list("abcde")}],
              "compatibility_source": "text"}
    tok = SIDTokenizer.from_quantizer(q, ids, x, features=record)
    assert tok.embedding_dim == DIM + 5 + 2 and tok.config["features"] == record
    loaded = SIDTokenizer.from_pretrained(tok.save_pretrained(tmp_path / "tok"))
    assert loaded.config == tok.config and loaded.features == record and loaded.method == tok.method
    assert torch.equal(loaded.quantizer.encode(x), tok.sids[:, :-1])  # learned fusion weights travel in quantizer.safetensors
    # Cold start goes through the same fusion; random IDs behind a fusion still take the rows after the catalogue.
    _, x_new = fused_catalogue(n=250)
    new = loaded.encode(x_new[240:])
    assert torch.equal(new.sids, tok.encode(x_new[240:]).sids)
    if method == "fused-random":
        assert torch.equal(new.sids[:, :-1], RandomIDs((4, 4, 4), seed=3).encode(torch.zeros(250, 1))[240:])
    else:
        assert torch.equal(new.sids[:, :-1], q.encode(x_new[240:]))
    with pytest.raises(ValueError, match=r"must be \(M, 19\)"):
        loaded.encode(x_new[240:, :DIM])


def test_single_input_artifacts_have_no_features_key(tmp_path, rq_kmeans_tokenizer):
    tok, _ = rq_kmeans_tokenizer
    folder = tok.save_pretrained(tmp_path / "tok")
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert "features" not in config and "fusion" not in config["quantizer_config"]
    assert SIDTokenizer.from_pretrained(folder).features is None


def test_a_tampered_rq_vae_config_fails_before_allocating(tmp_path):
    """RQ-VAE allocates its codebooks when built: sizes from a tampered config are checked on the meta device first."""
    import resource

    tok, _ = build("rq_vae")
    folder = tok.save_pretrained(tmp_path / "tok")
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["quantizer_config"]["codebook_sizes"] = [4, 2**36]  # 2^36 x 4 floats = 1 TiB if allocated
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match=r"sid_tokenizer_config\.json: cannot build quantiser 'rq_vae'.*implies tensor 'codebooks\.1' "
                                         r"of shape \(68719476736, 4\)"):
        SIDTokenizer.from_pretrained(folder)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing big was allocated


def test_artifacts_record_the_installed_genrec_version(tmp_path, rq_kmeans_tokenizer):
    # genrec.tokenizer reads the version from the package metadata (it may not import genrec's core):
    # it must be the version genrec itself reports.
    import genrec
    from genrec.tokenizer.version import genrec_version

    tok, _ = rq_kmeans_tokenizer
    config = json.loads((tok.save_pretrained(tmp_path / "tok") / CONFIG_FILE).read_text())
    assert config["genrec_version"] == genrec_version() == genrec.__version__
