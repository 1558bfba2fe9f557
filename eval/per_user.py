"""Every user's metrics of an evaluation, written for paired significance tests between runs.

Formats (by suffix):

- ``.json``: ``{"split", "metric_names", "num_users", "user_index": [...], "user_id": [...],
  "<metric>": [...], ...}``, lists aligned, users in ascending ``user_index`` (row of the split's ``user_ids``);
- ``.safetensors``: tensors ``user_index`` (int64) and one float32 tensor per metric, the split and
  metric names in the metadata.

The mean of a metric's per-user values is the reported metric.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from genrec.eval.evaluate import EvalResult
from genrec.tokenizer.io import atomic_write_file, atomic_write_text


def write_per_user(path: str | Path, res: EvalResult, split_name: str, user_ids: list[str], cold_by_user=None) -> Path:
    """Per-user metrics of ``res`` to ``path`` (``.safetensors``, else JSON), users in ``res.user_index`` order.

    ``cold_by_user``: optional (users,) bool by user index (cold-start protocol): written as the
    ``cold_target`` column, 1 where the user's target is a cold item.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    users = res.user_index.long().cpu()
    per_user = dict(res.per_user)
    if cold_by_user is not None:
        per_user["cold_target"] = torch.as_tensor(cold_by_user, dtype=torch.float32)[users]
    names = list(per_user)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        tensors = {"user_index": users.contiguous(), **{n: per_user[n].float().cpu().contiguous() for n in names}}
        metadata = {"format": "genrec-per-user-metrics", "split": split_name, "metric_names": json.dumps(names),
                    "num_users": str(len(users))}
        atomic_write_file(path, lambda tmp: save_file(tensors, tmp, metadata=metadata), mode=0o644)
    else:
        obj = {"split": split_name, "metric_names": names, "num_users": len(users), "user_index": users.tolist(),
               "user_id": [user_ids[i] for i in users.tolist()], **{n: per_user[n].cpu().tolist() for n in names}}
        atomic_write_text(path, json.dumps(obj) + "\n")
    return path
