"""Data-parallel training under ``accelerate launch`` with 2 CPU processes (gloo).

The 2-process run trains, validates and evaluates with every process decoding a shard; its
metrics (computed on the gathered, de-duplicated per-user results) must equal, exactly, a
single-process evaluation of the same saved weights: both decode every user in the same
length-sorted batch (same padding), on one thread each, so the numbers are bit-identical.

On CPU, ``accelerate launch --cpu --num_processes 2`` starts ONE process (Accelerate's CPU path
wants mpirun); the torchrun path with ``ACCELERATE_USE_CPU=1`` (``--multi_gpu`` names the launcher,
no GPU is used) starts two processes that join a gloo process group.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
from pathlib import Path

import pytest

from genrec.data import leave_one_out_split, load_dataset
from genrec.runs import open_run
from tests._genrec_tiny import RECIPE, TINY_CAUSAL, TINY_T5, make_dataset, python, recipe_args, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_thread", "fresh_accelerator_state")]  # 2-process accelerate launches


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_2_cpu_processes(script: Path, args: list[str], log: Path, timeout: int = 300) -> None:
    env = subprocess_env() | {"ACCELERATE_USE_CPU": "1"}
    cmd = [python(), "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--num_cpu_threads_per_process", "1",
           "--main_process_ip", "127.0.0.1", "--main_process_port", str(_free_port()), str(script), *args]
    with open(log, "w") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
    assert code == 0, log.read_text()[-4000:]


@pytest.mark.parametrize("model_args", [TINY_T5, TINY_CAUSAL], ids=["t5", "causal"])
def test_two_process_run_evaluates_exactly_like_one_process(tmp_path, model_args):
    data, tok = make_dataset(tmp_path)
    out = tmp_path / "run"
    # eval.batch_size=10: 48 users -> 5 batches (the last of 8), so the sharded loader pads with repeated users.
    args = recipe_args(data, tok, out, *model_args, "training.epochs=2", "training.mixed_precision=bf16",
                       "training.grad_accum_steps=2", "eval.batch_size=10")
    launch_2_cpu_processes(RECIPE, args, tmp_path / "launch.log")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert metrics["timings"]["test_users"] == metrics["timings"]["validation_users"] == 48  # every user once
    # Every process gets ceil(batches / 2) batches of 16 and steps once per 2 of them (and at the epoch's end).
    history = json.loads((out / "train_history.json").read_text())
    batches = math.ceil(len(leave_one_out_split(load_dataset(data)).train) / 16)
    per_epoch = math.ceil(math.ceil(batches / 2) / 2)
    assert [e["steps"] for e in history["epochs"]] == [per_epoch, 2 * per_epoch] and metrics["steps"] == 2 * per_epoch

    # The same weights, evaluated by this (single) process.
    from genrec.data import Seq2SeqCollator, build_seq2seq_dataset
    from genrec.decoding import PrefixTrie
    from genrec.eval.evaluate import evaluate_generative
    from genrec.models import load_model
    from genrec.tokenizer import SIDTable

    space = open_run(out).token_space
    table = SIDTable.load(tok)
    tokens = space.codes_to_tokens(table.sids)
    split = leave_one_out_split(load_dataset(data))
    model = load_model(out / "best")
    trie = PrefixTrie.from_item_tokens(tokens, level_ranges=space.level_ranges)
    for name, examples in (("validation", split.valid), ("test", split.test)):
        ds = build_seq2seq_dataset(examples, tokens, add_user_token=space.user_token_fn, eos_id=space.eos_id)
        res = evaluate_generative(model, ds, trie, Seq2SeqCollator(space.pad_id), num_beams=10, batch_size=10, show_progress=False)
        assert res.num_users == 48
        assert res.metrics == metrics[name], name  # exact
