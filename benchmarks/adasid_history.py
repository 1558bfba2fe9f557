"""What AdaSID's stages did during training (issue 23), read from the tokenizers' own histories.

    python benchmarks/adasid_history.py adasid=runs/cold_start/adasid_s1/tokenizer \\
        adasid_partial08=runs/cold_start/adasid_partial08/tokenizer --out benchmarks/results/adasid_search/history.md

Each ``name=TOKENIZER_DIR`` is a ``recipes/train_tokenizer.py`` output whose ``metrics.json`` holds the per-epoch
history the regularisers record (docs/regularizers.md, "Diagnostics"). For the first epoch, 25%, 50% and the last
epoch of training, the table gives: stage 1 (the gate): candidate pairs, relaxed pairs (and full collisions among
them), mean content cosine kappa and CF cosine of the relaxed vs the kept pairs; stage 2a (the load): the share of
the repulsion pressure on the 10% most loaded pairs (0.1 = even) and the largest weight; stage 2b (the schedule):
the repulsion and collaborative weights; and the catalogue's collision rate. Tokenizers trained before a
diagnostic existed show n/a for it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from genrec.tokenizer.io import atomic_write_text

COLUMNS = (  # (header, history key, digits)
    ("pairs", "rep/active", 0),
    ("relaxed", "rep/relaxed", 0),
    ("of them collisions", "rep/relaxed_collisions", 0),
    ("kappa relaxed / kept", ("rep/gate/kappa_relaxed", "rep/gate/kappa_kept"), 3),
    ("CF cosine relaxed / kept", ("rep/gate/cf_relaxed", "rep/gate/cf_kept"), 3),
    ("pressure on top-10% load", "rep/load/top_decile_share", 3),
    ("max load weight", "rep/load/weight_max", 2),
    ("repulsion weight", "rep/weight", 3),
    ("CF weight", "cf/weight", 3),
    ("collision rate", "collision_rate", 4),
)


def _value(history: dict, key: str, epoch: int, digits: int) -> str:
    values = history.get(key)
    if not values or epoch >= len(values) or values[epoch] is None or (isinstance(values[epoch], float) and math.isnan(values[epoch])):
        return "n/a"
    return f"{values[epoch]:.{digits}f}"


def table(histories: dict[str, dict]) -> str:
    lines = ["| tokenizer | epoch | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for name, history in histories.items():
        epochs = len(history.get("loss", []))
        if not epochs:
            raise SystemExit(f"{name}: the tokenizer's metrics.json has no training history")
        for epoch in sorted({0, epochs // 4, epochs // 2, epochs - 1}):
            cells = []
            for _, key, digits in COLUMNS:
                keys = key if isinstance(key, tuple) else (key,)
                cells.append(" / ".join(_value(history, k, epoch, digits) for k in keys))
            lines.append(f"| {name} | {epoch + 1} of {epochs} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tokenizers", nargs="+", metavar="name=TOKENIZER_DIR")
    parser.add_argument("--out", default=None, help="write the table here as well (Markdown)")
    args = parser.parse_args(argv)
    histories = {}
    for spec in args.tokenizers:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"expected name=TOKENIZER_DIR, got {spec!r}")
        path = Path(folder) / "metrics.json"
        if not path.is_file():
            raise SystemExit(f"{path}: missing (is {folder} a train_tokenizer.py output?)")
        histories[name] = json.loads(path.read_text()).get("history", {})
    text = table(histories)
    if args.out:
        atomic_write_text(Path(args.out), text)
    print(text)
    return text


if __name__ == "__main__":
    main()
