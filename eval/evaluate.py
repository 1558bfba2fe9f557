"""Full-catalogue evaluation of a generative recommender through trie-constrained beam search.

Every user's held-out item is ranked against the whole catalogue: beam search over the prefix trie
of all catalogue SIDs returns the top ``max(ks)`` items (docs/method.md section 8). Users are processed
in length-sorted batches (less padding); under ``accelerate launch`` each process decodes whole
batches of the same length-sorted batch list a single process would use, and the per-user results
are gathered with ``gather_for_metrics`` (which drops the users the sharded loader repeats to give
every process the same number of batches) and de-duplicated by user as a second guard (the first
copy, decoded in its original batch, is kept), so the metrics equal a single-process run's.

Decoding is :func:`genrec.decoding.search` (encoder-decoder models: :func:`constrained_beam_search`;
decoder-only models: :func:`constrained_beam_search_causal` on the same prompt rows, left-aligned;
``search="exact"``: :func:`exact_top_k`). ``left_align`` is re-exported here for older imports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from genrec.decoding import ColdCatalogue, ColdStartSettings, GenerationSettings, left_align  # noqa: F401 (left_align: re-exported)
from genrec.decoding import search as search_items
from genrec.eval.metrics import per_user_metrics
from genrec.training.sampler import LengthBucketBatchSampler


@dataclass
class EvalResult:
    """Mean metrics, per-user values (aligned with ``user_index``) and cost."""

    metrics: dict[str, float]
    per_user: dict[str, torch.Tensor] = field(default_factory=dict)
    user_index: torch.Tensor | None = None
    ranked_items: torch.Tensor | None = None
    targets: torch.Tensor | None = None  # (U,) each user's held-out item, aligned with ranked_items
    num_users: int = 0
    seconds: float = 0.0
    search_stats: dict | None = None  # exact search: certified_share, expanded_per_user

    @property
    def users_per_second(self) -> float:
        return self.num_users / max(self.seconds, 1e-9)

    def subset_metrics(self, selected) -> dict[str, float]:
        """Mean metrics over the users with ``selected[user_index]`` True (e.g. cold-start targets).

        ``selected``: (number of users in the split,) bool, indexed by user index. Returns the
        metrics plus ``num_users``; metrics are NaN when no evaluated user is selected.
        """
        mask = torch.as_tensor(selected, dtype=torch.bool)[self.user_index.long().cpu()]
        count = int(mask.sum())
        out = {name: (values.cpu()[mask].float().mean().item() if count else float("nan")) for name, values in self.per_user.items()}
        return {**out, "num_users": count}


@torch.no_grad()
def evaluate_generative(
    model: torch.nn.Module,
    dataset,
    trie,
    collator,
    *,
    num_beams: int = GenerationSettings.num_beams,
    ks: tuple[int, ...] = (5, 10),
    batch_size: int = GenerationSettings.batch_size,
    accelerator=None,
    max_users: int | None = None,
    show_progress: bool = True,
    desc: str = "evaluate",
    search: str = GenerationSettings.search,
    max_width: int = GenerationSettings.max_width,
    normalization: str = GenerationSettings.normalization,
    cold_start: ColdStartSettings | None = None,
    cold_catalogue: ColdCatalogue | None = None,
) -> EvalResult:
    """Rank the catalogue for every example of ``dataset`` and score the targets.

    Args:
        model: a SID model already on its device: encoder-decoder (``T5ForConditionalGeneration``) or
            decoder-only (``LlamaForCausalLM``, ...), possibly wrapped by peft; dispatched on
            ``model.config.is_encoder_decoder``.
        dataset: rows with ``input_ids`` (the prompt: :func:`genrec.data.build_seq2seq_dataset` rows
            serve both kinds of model), ``target`` (item index), ``user_index``, ``length``.
        trie: :class:`genrec.decoding.PrefixTrie` of the catalogue's SID tokens.
        collator: pads rows into ``input_ids``/``attention_mask`` tensors (either side: prompts of a
            decoder-only model are left-aligned here).
        num_beams: beam width (>= max(ks); docs/method.md asks for >= the largest K reported).
        search: ``"beam"`` or ``"exact"`` (:func:`genrec.decoding.exact_top_k` from width ``num_beams`` up to
            ``max_width``; the result's ``search_stats`` hold the certified share and prefixes expanded per user).
        max_users: evaluate only the first ``max_users`` examples (quick validation); None = all.
        cold_start, cold_catalogue: cold-start decoding (:class:`~genrec.decoding.ColdStartSettings`; the catalogue's
            cold items as a :class:`~genrec.decoding.ColdCatalogue`, needed unless the method is ``"off"``). Only
            ``"prefix"`` here: the ``"content"`` and ``"fusion"`` methods need the users' history items
            (``benchmarks/cold_start.py``, ``benchmarks/content_knn.py``).
    """
    cold_start = cold_start or ColdStartSettings()
    if cold_start.method != "off":
        if cold_start.method in ("content", "fusion"):
            raise ValueError(f"cold_start.method={cold_start.method!r} needs history items and content embeddings: evaluate it "
                             "with benchmarks/cold_start.py; evaluation supports 'prefix'")
        if cold_catalogue is None:
            raise ValueError(f"cold_start.method={cold_start.method!r} needs the catalogue's cold items (cold_catalogue)")
    top_k = max(ks)
    if num_beams < top_k:
        raise ValueError(f"num_beams={num_beams} must be >= the largest K ({top_k})")
    if max_users is not None:
        dataset = dataset.select(range(min(max_users, len(dataset))))
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    trie = trie.to(device)
    sampler = LengthBucketBatchSampler(dataset["length"], batch_size, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator)
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader, device_placement=True)
    is_main = accelerator is None or accelerator.is_local_main_process

    settings = GenerationSettings(num_beams=num_beams, normalization=normalization, batch_size=batch_size, search=search,
                                  max_width=max(max_width, num_beams), cold_start=cold_start)
    if cold_catalogue is not None:
        cold_catalogue = cold_catalogue.to(device)
    start = time.perf_counter()
    ranked_all, target_all, user_all = [], [], []
    certified_count = expanded_total = 0
    for batch in tqdm(loader, desc=desc, disable=not (show_progress and is_main), dynamic_ncols=True):
        found = search_items(model, batch["input_ids"].to(device), batch["attention_mask"].to(device), trie, top_k=top_k,
                             settings=settings, cold_catalogue=cold_catalogue if cold_start.method != "off" else None)
        items = found.items.to(device)
        if found.certified is not None:
            certified_count += int(found.certified.sum())
            expanded_total += int(found.expanded.sum())
        ranked, target, users = items, batch["target"].to(device), batch["user_index"].to(device)
        if accelerator is not None:
            # gather_for_metrics drops the repeated examples the sharded loader appended to even out the
            # last batches; the de-duplication by user below is a second guard.
            ranked, target, users = accelerator.gather_for_metrics((ranked.contiguous(), target.contiguous(), users.contiguous()))
        ranked_all.append(ranked.cpu())
        target_all.append(target.cpu())
        user_all.append(users.cpu())
    seconds = time.perf_counter() - start
    if was_training:
        model.train()

    ranked = torch.cat(ranked_all)
    targets = torch.cat(target_all)
    users = torch.cat(user_all)
    # Sharding pads the last batches with repeated examples: keep each user once.
    users, first = _first_occurrence(users)
    ranked, targets = ranked[first], targets[first]
    expected = len(torch.unique(torch.as_tensor(dataset["user_index"])))
    if len(users) != expected:
        raise RuntimeError(f"evaluation gathered {len(users)} distinct users, the dataset has {expected}: "
                           "a process's results were lost (metrics would not be over all users)")
    per_user = per_user_metrics(ranked, targets, ks)
    metrics = {name: v.mean().item() for name, v in per_user.items()}
    stats = None
    if search == "exact":  # this process's share (exact search is for single-process evaluation and benchmarks)
        stats = {"certified_share": certified_count / max(1, len(users)), "expanded_per_user": expanded_total / max(1, len(users))}
    return EvalResult(metrics=metrics, per_user=per_user, user_index=users, ranked_items=ranked, targets=targets, num_users=len(users),
                      seconds=seconds, search_stats=stats)


@torch.no_grad()
def evaluate_ranker(
    rank_fn,
    dataset,
    collator,
    *,
    ks: tuple[int, ...] = (5, 10),
    batch_size: int = GenerationSettings.batch_size,
    max_users: int | None = None,
    show_progress: bool = True,
    desc: str = "evaluate",
) -> EvalResult:
    """Score a non-generative ranker (e.g. SASRec on item IDs) exactly like :func:`evaluate_generative`.

    ``rank_fn(batch) -> (B, max(ks))`` item indices, best first, for a collated batch; rows of
    ``dataset`` carry ``target``, ``user_index`` and ``length``. Single process (reference models are small).
    """
    if max_users is not None:
        dataset = dataset[: min(max_users, len(dataset))]
    sampler = LengthBucketBatchSampler([r["length"] for r in dataset], batch_size, shuffle=False)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collator)
    start = time.perf_counter()
    ranked_all, target_all, user_all = [], [], []
    for batch in tqdm(loader, desc=desc, disable=not show_progress, dynamic_ncols=True):
        ranked_all.append(rank_fn(batch).cpu())
        target_all.append(batch["target"])
        user_all.append(batch["user_index"])
    seconds = time.perf_counter() - start
    ranked, targets, users = torch.cat(ranked_all), torch.cat(target_all), torch.cat(user_all)
    per_user = per_user_metrics(ranked, targets, ks)
    return EvalResult(metrics={name: v.mean().item() for name, v in per_user.items()}, per_user=per_user, user_index=users,
                      ranked_items=ranked, num_users=len(users), seconds=seconds)


def _first_occurrence(users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique users and the position of each one's first occurrence in ``users``."""
    uniq, inverse = torch.unique(users, return_inverse=True)
    positions = torch.arange(len(users))
    first = torch.full((len(uniq),), len(users), dtype=torch.long).scatter_reduce(0, inverse, positions, reduce="amin")
    return uniq, first
