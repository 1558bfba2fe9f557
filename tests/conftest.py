"""Shared pytest fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data directory from ``$GENREC_DATA_DIR``; skips the test (with the reason) when unset or missing."""
    value = os.environ.get("GENREC_DATA_DIR")
    if not value:
        pytest.skip("GENREC_DATA_DIR is not set (point it at the folder holding amazon_beauty/, ml_100k/, ...)")
    path = Path(value).expanduser()
    if not path.is_dir():
        pytest.skip(f"GENREC_DATA_DIR={value} does not exist")
    return path


def _swapped_by_a_load() -> list[str]:
    """What transformers' ``from_pretrained`` swaps for the duration of a load and has not put back."""
    swapped = []
    modeling = sys.modules.get("transformers.modeling_utils")
    if modeling is not None:
        for name in ("tie_weights", "init_weights"):
            if getattr(modeling.PreTrainedModel, name).__name__ != name:
                swapped.append(f"PreTrainedModel.{name}")
    for name in ("normal_", "uniform_", "zeros_", "ones_", "linspace"):
        function = getattr(torch.nn.init, name, None) or getattr(torch, name)
        if not getattr(function, "__module__", "torch").startswith("torch"):
            swapped.append(f"{function.__module__}.{name}")
    return swapped


@pytest.fixture(autouse=True)
def no_leaked_load_patches():
    """Fail the test that leaves a transformers load half undone, not the unrelated tests after it: two loads at
    once in one process can restore each other's swaps (weights stop tying, parameters stay on the meta device)."""
    yield
    leaked = _swapped_by_a_load()
    assert not leaked, f"still swapped after the test: {leaked} (models loaded concurrently in one process?)"


@pytest.fixture
def single_thread():
    """One torch thread for tests of tiny tensors: threads gain nothing there, and on a shared 2-core
    machine two threads made such tests 5-10x slower. Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fresh_accelerator_state():
    """A fresh accelerate state before and after the test. ``AcceleratorState`` is a process-wide singleton
    that keeps the first mixed precision / device it was built with; tests that build ``Accelerator``s
    (recipes, ``genrec.training.train``) each pick their own. Use with
    ``pytestmark = pytest.mark.usefixtures("fresh_accelerator_state")``."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(autouse=True)
def recipes_keep_the_test_thread_count(monkeypatch):
    """Recipes pick torch's thread count from the free cores unless OMP_NUM_THREADS says otherwise
    (``genrec.training.choose_num_threads``); in tests they keep the count the test runs with, so two
    recipe runs in one test compute with the same threads (exact comparisons) whatever the machine's load."""
    if "OMP_NUM_THREADS" not in os.environ:
        monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))


@pytest.fixture(scope="module")
def recipe_runs(tmp_path_factory):
    """recipes/train_genrec.py runs: causal, LoRA on a tiny local Llama (titles + prompt), LoRA on a tiny local T5 (titles).

    Used by test_pipeline and test_cli; module-scoped, so each of those modules trains its own runs."""
    from accelerate.state import AcceleratorState

    from genrec.recipes import train_genrec
    from genrec.tokenizer import RQKMeans, SIDTable, SIDTokenizer
    from tests._genrec_tiny import TINY_CAUSAL, make_dataset, recipe_args, tiny_pretrained
    from tests._genrec_tiny import TINY_T5 as TINY_T5_ARGS
    from tests.helpers import DIM

    root = tmp_path_factory.mktemp("recipe_runs")
    data, table_dir = make_dataset(root)
    # The runs' tokenizer_dir: a SID tokenizer artifact (the pipeline loads one) holding make_dataset's SID table.
    quantizer = RQKMeans((4, 4), seed=0)
    quantizer.fit(torch.randn(30, DIM, generator=torch.Generator().manual_seed(0)))
    tok = SIDTokenizer(quantizer, SIDTable.load(table_dir), embedding_dim=DIM).save_pretrained(root / "sid_tokenizer")
    fast = ["training.epochs=2", "training.mixed_precision=no", "training.checkpoint_at_epoch_end=false",
            "training.checkpoint_every_minutes=null", "eval.valid_max_users=null"]
    configs = Path(train_genrec.__file__).parent / "configs"
    specs = {
        "causal": ("genrec_beauty_causal.yaml", [*TINY_CAUSAL]),
        "causal_noeos": ("genrec_beauty_causal.yaml", [*TINY_CAUSAL, "model.causal.prompt_eos=false"]),
        "t5_every": ("genrec_beauty.yaml", [*TINY_T5_ARGS, "model.encoder=causal", "model.train_targets=every_item"]),
        "t5_pooled": ("genrec_beauty.yaml", [*TINY_T5_ARGS, "model.encoder=item_pooled"]),
        "lora_llama": ("genrec_beauty_lora.yaml", [f"model.lora.pretrained={tiny_pretrained(root / 'llama', 'llama')}", "model.lora.r=4",
                                                   "model.lora.prompt=the next item is"]),
        "lora_t5": ("genrec_beauty_lora.yaml", [f"model.lora.pretrained={tiny_pretrained(root / 't5', 't5')}", "model.lora.r=4"]),
        "lora_t5_full": ("genrec_beauty_lora.yaml", [f"model.lora.pretrained={root / 't5'}", "model.lora.r=4",
                                                     "model.lora.new_embeddings=full"]),
    }
    runs = {"data": data, "tok": tok, "root": root}
    for name, (config, extra) in specs.items():
        AcceleratorState._reset_state(reset_partial_state=True)
        train_genrec.main(["--config", str(configs / config), *recipe_args(data, tok, root / name, *fast, *extra)])
        runs[name] = root / name
    AcceleratorState._reset_state(reset_partial_state=True)
    return runs
