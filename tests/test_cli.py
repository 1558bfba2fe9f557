"""The ``genrec`` command line: end to end from subprocesses on a tiny dataset, help texts, history files and bad inputs.

The tiny dataset is synthetic (60 items with Amazon-style text fields, 40 users); the tokenizer recipe
embeds the 60 texts with the default MiniLM model (cached in a temporary folder), RQ-KMeans 4x4.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genrec import cli
from genrec.cli import InputError, read_histories
from tests.helpers import NUM_ITEMS, synthetic_interactions, write_dataset

pytestmark = pytest.mark.usefixtures("single_thread")

TINY_TRAIN = ["num_user_tokens=7", "max_history=5", "model.d_model=32", "model.num_layers=1", "model.num_decoder_layers=1",
              "model.num_heads=2", "model.d_kv=16", "model.d_ff=64", "training.epochs=2", "training.batch_size=32",
              "training.warmup_steps=2", "training.mixed_precision=no", "eval.num_beams=10", "eval.batch_size=64",
              "eval.valid_max_users=null"]
COMMANDS = ("train-tokenizer", "train", "evaluate", "export", "recommend", "train-sasrec", "compare")


def genrec(*args: str, env: dict, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m genrec.cli ARGS`` in a fresh interpreter (what the console script runs)."""
    return subprocess.run([sys.executable, "-m", "genrec.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """train-tokenizer -> train -> evaluate through the command line, each in its own process."""
    root = tmp_path_factory.mktemp("cli")
    data = write_dataset(root / "data" / "tiny", synthetic_interactions())
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", GENREC_CACHE_DIR=str(root / "cache"), TOKENIZERS_PARALLELISM="false")
    steps = {
        "train-tokenizer": genrec("train-tokenizer", "--config", "tokenizer_rqkmeans", f"dataset={data}", "codebook_sizes=[4,4]",
                                  "output_dir=tok", env=env, cwd=root),
    }
    assert steps["train-tokenizer"].returncode == 0, steps["train-tokenizer"].stderr[-3000:]
    steps["train"] = genrec("train", "--config", "genrec_beauty", f"dataset={data}", "tokenizer_dir=tok", "output_dir=run", *TINY_TRAIN,
                            env=env, cwd=root)
    assert steps["train"].returncode == 0, steps["train"].stderr[-3000:]
    steps["evaluate"] = genrec("evaluate", "--run", "run", "--split", "test", env=env, cwd=root)
    assert steps["evaluate"].returncode == 0, steps["evaluate"].stderr[-3000:]
    return {"root": root, "data": data, "env": env, "steps": steps}


@pytest.mark.slow
def test_command_line_end_to_end(trained_run):
    root, env = trained_run["root"], trained_run["env"]
    assert (root / "tok" / "sid_tokenizer_config.json").is_file() and (root / "tok" / "metrics.json").is_file()
    metrics = json.loads((root / "run" / "metrics.json").read_text())
    evaluation = json.loads((root / "run" / "eval_test.json").read_text())
    assert evaluation["metrics"] == pytest.approx(metrics["test"]) and evaluation["num_users"] == 40

    histories = [{"user_id": "user0", "history": ["item1", "item4", "item7"]}, {"history": ["item10", "item13", "not-an-item"]},
                 {"user_id": "stranger", "history": ["item30"]}]
    (root / "histories.json").write_text(json.dumps(histories))
    run = genrec("recommend", "--model", "run", "--input", "histories.json", "--output", "recs.csv", "--k", "5", "--exclude-seen",
                 env=env, cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "skipped 1 unknown item id(s) in 1 of 3 request(s): request 1: 1 (['not-an-item'])" in run.stderr
    assert "3 request(s), k=5; 1 unknown item id(s) skipped in 1 request(s); 0 popularity fallback(s) -> recs.csv" in run.stderr
    with open(root / "recs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["user_id", "rank", "item_id", "score"] and len(rows) == 15
    assert [r["user_id"] for r in rows] == ["user0"] * 5 + ["1"] * 5 + ["stranger"] * 5  # a missing user id: the request's position
    assert [int(r["rank"]) for r in rows] == [1, 2, 3, 4, 5] * 3
    for request, block in zip(histories, (rows[:5], rows[5:10], rows[10:]), strict=True):
        assert not {r["item_id"] for r in block} & set(request["history"])  # seen items excluded (--exclude-seen)

    # The same answer in-process from the run folder.
    from genrec.pipeline import GenerativeRecommender

    rec = GenerativeRecommender.from_pretrained(root / "run", device="cpu")
    expected = rec.recommend([h["history"] for h in histories], k=5, user_ids=[h.get("user_id") for h in histories], exclude_seen=True)
    assert [r["item_id"] for r in rows] == [item for r in expected for item in r.item_ids]
    np.testing.assert_allclose([float(r["score"]) for r in rows], [s for r in expected for s in r.scores], atol=1e-4)
    assert rec.metrics["test"] == pytest.approx(metrics["test"])


@pytest.mark.slow
def test_export_then_recommend_from_the_bundle(trained_run, tmp_path, capsys, monkeypatch):
    root = trained_run["root"]
    assert cli.main(["export", "--model", str(root / "run"), "--out", str(tmp_path / "bundle")]) == 0
    assert (tmp_path / "bundle" / "genrec_config.json").is_file() and (tmp_path / "bundle" / "popular_items.json").is_file()
    card = (tmp_path / "bundle" / "README.md").read_text()
    assert "recommendation_metrics:" in card and "ndcg@10" in card

    # CSV interactions in (rows out of time order; user order = first appearance), JSON out.
    (tmp_path / "events.csv").write_text("user_id,item_id,timestamp\nuser3,item9,20\nuser0,item4,2\nuser3,item8,10\n"
                                         "user0,item1,1\nuser0,item7,3\nuser3,item11,30\n")
    capsys.readouterr()
    assert cli.main(["recommend", "--model", str(tmp_path / "bundle"), "--input", str(tmp_path / "events.csv"), "--k", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["user_id"] for r in out] == ["user3", "user0"] and all(len(r["item_ids"]) == 4 for r in out)
    from genrec.pipeline import GenerativeRecommender

    rec = GenerativeRecommender.from_pretrained(root / "run", device="cpu")
    expected = rec.recommend([["item8", "item9", "item11"], ["item1", "item4", "item7"]], k=4, user_ids=["user3", "user0"])
    assert [r["item_ids"] for r in out] == [r.item_ids for r in expected]
    np.testing.assert_allclose([r["scores"] for r in out], [r.scores for r in expected], atol=1e-4)

    # Cold-start decoding from the command line: the bundle knows its warm items.
    assert (tmp_path / "bundle" / "warm_items.json").is_file()
    assert cli.main(["recommend", "--model", str(tmp_path / "bundle"), "--input", str(tmp_path / "events.csv"), "--k", "4",
                     "--cold-start", "prefix", "--cold-epsilon", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = rec.recommend([["item8", "item9", "item11"], ["item1", "item4", "item7"]], k=4, user_ids=["user3", "user0"],
                             cold_start={"method": "prefix", "epsilon": 0.5})
    assert [r["item_ids"] for r in out] == [r.item_ids for r in expected]
    assert cli.main(["recommend", "--model", str(tmp_path / "bundle"), "--history", "item1", "--cold-epsilon", "2"]) == 1
    assert "--cold-epsilon must be in [0, 1]" in capsys.readouterr().err

    # The "content" method: a bundle without content vectors says so; exported with the tokenizer's item texts embedded
    # again (read from the tokenizer run's embedding cache), it serves the same lists as the run folder.
    assert cli.main(["recommend", "--model", str(tmp_path / "bundle"), "--history", "item1", "--cold-start", "content"]) == 1
    assert "content vectors, and this recommender has none" in capsys.readouterr().err
    monkeypatch.setenv("GENREC_CACHE_DIR", str(root / "cache"))
    assert cli.main(["export", "--model", str(root / "run"), "--item-embeddings", "text", "--out", str(tmp_path / "bundle2")]) == 0
    assert (tmp_path / "bundle2" / "item_embeddings.safetensors").is_file()
    content = ["--cold-start", "content", "--cold-epsilon", "0.5", "--cold-content-weight", "5", "--cold-score-offset", "-1",
               "--cold-placement", "tail"]
    capsys.readouterr()
    assert cli.main(["recommend", "--model", str(tmp_path / "bundle2"), "--input", str(tmp_path / "events.csv"), "--k", "4",
                     *content]) == 0
    out = json.loads(capsys.readouterr().out)
    rec = GenerativeRecommender.from_pretrained(root / "run", device="cpu", item_embeddings="text")
    expected = rec.recommend([["item8", "item9", "item11"], ["item1", "item4", "item7"]], k=4, user_ids=["user3", "user0"],
                             cold_start={"method": "content", "epsilon": 0.5, "content_weight": 5.0, "score_offset": -1.0,
                                         "placement": "tail"})
    assert [r["item_ids"] for r in out] == [r.item_ids for r in expected]
    fusion = ["--cold-start", "fusion", "--cold-epsilon", "0.3", "--cold-history-decay", "0.5", "--cold-fusion-weight", "1.5",
              "--cold-boost", "2"]
    assert cli.main(["recommend", "--model", str(tmp_path / "bundle2"), "--input", str(tmp_path / "events.csv"), "--k", "4",
                     *fusion]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = rec.recommend([["item8", "item9", "item11"], ["item1", "item4", "item7"]], k=4, user_ids=["user3", "user0"],
                             cold_start={"method": "fusion", "epsilon": 0.3, "history_decay": 0.5, "fusion_weight": 1.5,
                                         "cold_boost": 2.0})
    assert [r["item_ids"] for r in out] == [r.item_ids for r in expected]
    assert cli.main(["recommend", "--model", str(tmp_path / "bundle2"), "--history", "item1", "--cold-start", "fusion",
                     "--cold-history-decay", "2"]) == 1
    assert "--cold-history-decay must be in [0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_recommend_bad_inputs_from_the_command_line(trained_run, tmp_path, capsys):
    model = str(trained_run["root"] / "run")
    (tmp_path / "h.json").write_text(json.dumps([{"user_id": "a", "history": ["item1"]}, {"user_id": "b", "history": ["item2", "zzz"]},
                                                 {"user_id": "c", "history": []}]))
    base = ["recommend", "--model", model, "--input", str(tmp_path / "h.json"), "--k", "3"]
    capsys.readouterr()
    assert cli.main([*base, "--strict", "--empty-history", "popular"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'h.json'}: entry 1 (user 'b'): 1 item id(s) not in the catalogue of {NUM_ITEMS} items: ['zzz']" in err
    assert cli.main(base) == 1
    assert f"{tmp_path / 'h.json'}: entry 2 (user 'c'): an empty history; nothing to recommend from (--empty-history popular" in capsys.readouterr().err
    assert cli.main([*base, "--empty-history", "popular", "--output", str(tmp_path / "out.jsonl")]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["source"] for r in lines] == ["model", "model", "popular"] and lines[1]["unknown_item_ids"] == ["zzz"]
    (tmp_path / "bad.csv").write_text("user_id,item_id\nu1,item1\nu2,\n")
    assert cli.main(["recommend", "--model", model, "--input", str(tmp_path / "bad.csv")]) == 1
    assert f"{tmp_path / 'bad.csv'}: line 3: empty item_id" in capsys.readouterr().err
    assert cli.main(["recommend", "--model", str(tmp_path / "nothing-here"), "--history", "item1"]) == 1
    assert "neither a local folder nor a valid Hub repo id" in capsys.readouterr().err


def test_console_script_is_installed():
    script = Path(sys.executable).parent / ("genrec.exe" if os.name == "nt" else "genrec")
    assert script.is_file(), f"{script} missing: reinstall the package (pip install -e .) to register the console script"
    run = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.startswith("genrec ")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_shows_an_example(command, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert "example" in text and f"genrec {command} " in text
    if command in ("train-tokenizer", "train", "evaluate", "recommend", "export"):
        assert f"usage: genrec {command} " in text  # the full option list follows
    if command in ("train-tokenizer", "train"):
        assert "genrec_beauty" in text and "tokenizer_rqvae" in text  # the packaged configs are named


def test_top_level_help_and_unknown_commands(capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(f"  {c} " in text for c in COMMANDS) and "quick start" in text
    assert cli.main(["recomend"]) == 2
    assert "unknown command 'recomend'; did you mean recommend?" in capsys.readouterr().err


def test_compare_dispatches_to_the_comparison_recipe(tmp_path):
    # --report-only with no finished runs trains nothing; the resolved config lands in the output folder.
    assert cli.main(["compare", "--config", "compare_ml100k", "--report-only", f"output_dir={tmp_path / 'cmp'}"]) == 0
    saved = json.loads((tmp_path / "cmp" / "config.json").read_text())
    assert saved["dataset"] == "ml_100k" and set(saved["tokenizers"]) == {"rqvae", "letter", "quasid", "adasid"}


def test_config_names_resolve_to_the_packaged_configs(tmp_path):
    resolved = cli._resolve_config(["--config", "genrec_beauty", "training.epochs=1"])
    assert Path(resolved[1]) == cli.packaged_configs_dir() / "genrec_beauty.yaml" and resolved[2] == "training.epochs=1"
    assert Path(cli._resolve_config(["--config=tokenizer_rqvae.yaml"])[0].split("=", 1)[1]).name == "tokenizer_rqvae.yaml"
    mine = tmp_path / "genrec_beauty"
    mine.write_text("dataset: x\n")
    assert cli._resolve_config(["--config", str(mine)]) == ["--config", str(mine)]  # an existing file wins


# ---------------------------------------------------------------------------------------------- history files


def test_history_file_formats(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"user_id": "u1", "history": ["i1", 7]}, {"history": []}, ["i2"]]))
    assert [(r.user_id, r.history) for r in read_histories(tmp_path / "a.json")] == [("u1", ["i1", "7"]), (None, []), (None, ["i2"])]
    (tmp_path / "b.json").write_text(json.dumps({"u1": ["i1", "i2"], "u2": []}))
    assert [(r.user_id, r.history) for r in read_histories(tmp_path / "b.json")] == [("u1", ["i1", "i2"]), ("u2", [])]
    (tmp_path / "c.jsonl").write_text('{"user_id": 5, "history": ["i1"]}\n\n{"history": ["i3"]}\n')
    assert [(r.user_id, r.history, r.where) for r in read_histories(tmp_path / "c.jsonl")] == [
        ("5", ["i1"], f"{tmp_path / 'c.jsonl'}: line 1 (user '5')"), (None, ["i3"], f"{tmp_path / 'c.jsonl'}: line 3")]
    # CSV: grouped per user in order of first appearance; ordered by timestamp (numbers or ISO dates), ties in file order.
    (tmp_path / "d.csv").write_text("user_id,item_id,timestamp,rating\nu2,i3,2024-01-02,5\nu1,i1,5,4\nu2,i1,2024-01-01T10:00,3\n"
                                    "u1,i2,5,1\nu1,i0,1.5,2\n")
    got = read_histories(tmp_path / "d.csv")
    assert [(r.user_id, r.history) for r in got] == [("u2", ["i1", "i3"]), ("u1", ["i0", "i1", "i2"])]
    assert got[1].where == f"{tmp_path / 'd.csv'}: user 'u1' (line 3)"
    (tmp_path / "e.tsv").write_text("item_id\tuser_id\ni5\tu1\ni4\tu1\n")  # no timestamp: file order
    assert [(r.user_id, r.history) for r in read_histories(tmp_path / "e.tsv")] == [("u1", ["i5", "i4"])]


BAD_FILES = {
    "invalid_json": ("x.json", '[{"history": ["i1"]},\n {"history": [}]', r"x\.json: line 2 column \d+: invalid JSON"),
    "not_a_list": ("x.json", '"i1"', r"x\.json: expected a list of .* or a mapping user_id -> history, got str"),
    "missing_history": ("x.json", '[{"user_id": "u"}]', r"x\.json: entry 0: missing field 'history'"),
    "typo_field": ("x.json", '[{"histroy": []}]', r"x\.json: entry 0: unknown field\(s\) \['histroy'\]"),
    "history_not_list": ("x.json", '[{"user_id": "u", "history": "i1"}]', r"x\.json: entry 0 \(user 'u'\): 'history' must be a list"),
    "bad_item": ("x.json", '{"u9": ["i1", null]}', r"x\.json: user 'u9', history\[1\]: an item id must be a non-empty string"),
    "bad_user": ("x.json", '[{"user_id": [1], "history": []}]', r"x\.json: entry 0: 'user_id' must be a string or an integer"),
    "jsonl_line": ("x.jsonl", '{"history": ["i1"]}\n{"history": 3}\n', r"x\.jsonl: line 2: 'history' must be a list"),
    "csv_header": ("x.csv", "user,item\nu1,i1\n", r"x\.csv: line 1: the header \['user', 'item'\] lacks column\(s\) \['user_id', 'item_id'\]"),
    "csv_fields": ("x.csv", "user_id,item_id\nu1,i1\nu1,i2,9\n", r"x\.csv: line 3: 3 field\(s\), the header has 2"),
    "csv_timestamp": ("x.csv", "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,yesterday\n",
                      r"x\.csv: line 3: timestamp 'yesterday' is neither a number nor an ISO 8601 date"),
    "csv_empty_user": ("x.csv", "user_id,item_id\n,i1\n", r"x\.csv: line 2: empty user_id"),
    "empty_csv": ("x.csv", "", r"x\.csv: empty file"),
    "suffix": ("x.txt", "[]", r"x\.txt: cannot tell the format from the suffix '\.txt'"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_history_files_name_the_file_and_line(tmp_path, case):
    name, content, message = BAD_FILES[case]
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=message):
        read_histories(tmp_path / name)
    with pytest.raises(InputError, match="no such file"):
        read_histories(tmp_path / "missing.json")


@pytest.mark.slow
def test_lora_run_export_and_recommend(recipe_runs, tmp_path, capsys):
    """A LoRA train output folder through the command line: a moved base checkpoint is named with --base-model, the
    exported bundle needs none, and recommends what the run does."""
    from genrec.pipeline import GenerativeRecommender

    run, base = recipe_runs["lora_llama"], recipe_runs["root"] / "llama"
    history = ["i3", "i4", "i5"]
    expected = GenerativeRecommender.from_pretrained(run, device="cpu").recommend([history], k=4, user_ids=["u7"])[0]
    moved = base.rename(base.with_name("llama_moved"))
    try:
        capsys.readouterr()
        assert cli.main(["recommend", "--model", str(run), "--history", *history]) == 1
        err = capsys.readouterr().err
        assert "the LoRA run's base checkpoint is not a local folder" in err and "--base-model" in err
        assert cli.main(["export", "--model", str(run), "--base-model", str(moved), "--out", str(tmp_path / "bundle"), "--device", "cpu"]) == 0
        (tmp_path / "h.json").write_text(json.dumps([{"user_id": "u7", "history": history}]))
        capsys.readouterr()
        assert cli.main(["recommend", "--model", str(tmp_path / "bundle"), "--input", str(tmp_path / "h.json"), "--k", "4",
                         "--device", "cpu"]) == 0
        out = json.loads(capsys.readouterr().out)
    finally:
        moved.rename(base)
    assert out[0]["item_ids"] == expected.item_ids and not set(out[0]["item_ids"]) & set(history)
    np.testing.assert_allclose(out[0]["scores"], expected.scores, atol=1e-4)
    config = json.loads((tmp_path / "bundle" / "genrec_config.json").read_text())
    assert config["model_type"] == "lora" and config["lora"]["architecture"] == "causal"
    assert "fine-tuned with LoRA" in (tmp_path / "bundle" / "README.md").read_text()


@pytest.mark.parametrize("command,config", [("train", "genrec_beauty"), ("train-tokenizer", "tokenizer_rqvae"),
                                            ("train-sasrec", "sasrec")])
def test_data_dir_option_on_the_training_commands(command, config, tmp_path, capsys):
    """``--data-dir`` (as the README says) is accepted by every training command and used to find the dataset."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)  # each recipe builds its Accelerator with its own precision
    assert cli.main([command, "--config", config, "--data-dir", str(tmp_path), "dataset=no_such_dataset",
                     f"output_dir={tmp_path / 'out'}"]) == 1
    err = capsys.readouterr().err
    assert "unrecognized arguments" not in err and str(tmp_path / "no_such_dataset") in err and "Traceback" not in err


def test_config_typos_get_suggestions_and_name_the_override(capsys):
    assert cli.main(["train", "--config", "genrec_beuaty"]) == 1
    assert "did you mean genrec_beauty" in capsys.readouterr().err
    assert cli.main(["train", "--config", "genrec_beauty", "training.learning_rat=0.1"]) == 1
    err = capsys.readouterr().err
    assert "command-line override 'training.learning_rat=0.1'" in err and "Did you mean learning_rate" in err
    assert "genrec_beauty.yaml" not in err  # the file is fine: the typo is on the command line


def test_missing_folders_are_messages_not_tracebacks(tmp_path, capsys):
    assert cli.main(["evaluate", "--run", str(tmp_path / "no_run")]) == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "no_run") in err and "Traceback" not in err


@pytest.mark.slow
def test_export_refuses_to_drop_the_training_data_silently(trained_run, tmp_path, capsys):
    import shutil

    run = Path(shutil.copytree(trained_run["root"] / "run", tmp_path / "run", ignore=shutil.ignore_patterns("checkpoints")))
    manifest = json.loads((run / "run.json").read_text())  # what the run records (genrec.runs)
    (run / "run.json").write_text(json.dumps({**manifest, "dataset": str(tmp_path / "moved"),
                                              "tokenizer_dir": str(trained_run["root"] / "tok")}))
    assert cli.main(["export", "--model", str(run), "--out", str(tmp_path / "bundle")]) == 1
    assert "cannot load the run's dataset" in capsys.readouterr().err and not (tmp_path / "bundle").exists()
    assert cli.main(["export", "--model", str(run), "--out", str(tmp_path / "bundle"), "--allow-missing-data"]) == 0
    assert not (tmp_path / "bundle" / "popular_items.json").exists()


def test_history_files_with_a_byte_order_mark_are_read(tmp_path):
    """Spreadsheet exports start with a UTF-8 BOM; the data loader reads them, so does recommend --input."""
    path = tmp_path / "events.csv"
    path.write_bytes("user_id,item_id\nu1,item1\nu1,item2\n".encode("utf-8-sig"))
    requests = read_histories(str(path))
    assert [(r.user_id, r.history) for r in requests] == [("u1", ["item1", "item2"])]
