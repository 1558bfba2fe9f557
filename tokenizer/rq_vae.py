"""RQ-VAE (TIGER): MLP encoder, residual quantisation with the straight-through estimator, MLP decoder.

docs/method.md section 1. With x standardised per dimension, ``z = E(x)``, ``r^1 = z``,
``c^l = argmin_k ||r^l - e^l_k||``, ``r^{l+1} = r^l - e^l_{c^l}``, ``zq = sum_l e^l_{c^l}``,
``x_hat = D(z + sg[zq - z])`` (straight-through estimator), and the base loss terms are

- ``recon``    = mean((x - x_hat)^2)
- ``codebook`` = sum_l mean((sg[r^l] - e^l)^2)          (moves the codebooks)
- ``commit``   = beta * sum_l mean((r^l - sg[e^l])^2)    (moves the encoder; beta = 0.25)

(means over batch and dimensions). The next level's residual uses ``sg[e^l]``, so each codebook
learns only from its own codebook term.

Training (:meth:`RQVAE.fit`): k-means initialisation of every level's codebook on the residuals of
up to ``kmeans_init_points`` catalogue items (all of them when the catalogue is smaller); codes unused
during an epoch are reset to random residuals of their level; optional Sinkhorn-balanced assignment
of the last level (LETTER); any list of :class:`~genrec.tokenizer.base.Regularizer` adds its named
terms to the loss, exactly as ``base.py`` documents, so collision-aware regularisers plug in unchanged.

CPU-sensible defaults: AdamW, lr 1e-3, no weight decay, batch 1024, 200 epochs (Beauty, 12k items x
384-d: about 1 s per epoch on 2 cores). TIGER trains far longer (Adagrad, 20k epochs) on a GPU.
Training progress is epoch-based: ``t = epoch / max(1, epochs - 1)`` (0 at the first epoch, 1 at
the last).

Multimodal input (``fusion=``, see :mod:`genrec.tokenizer.fusion`): x is then a *packed* tensor of
several sources plus presence flags; the encoder reads ``fusion(x)`` (a learned
:class:`~genrec.tokenizer.fusion.ConcatFusion` or :class:`~genrec.tokenizer.fusion.ProjectionFusion`,
trained with the RQ-VAE), while the decoder reconstructs the fixed target ``fusion.target(x)`` (the
concatenation of the per-source normalised blocks), so the learned fusion cannot collapse. The
fusion normalises each source itself, so ``mean``/``std`` stay 0/1 and the regularisers' ``batch.x``
is that target. Without ``fusion`` nothing changes.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genrec.tokenizer.base import Quantizer, QuantizerOutput, Regularizer, RegularizerBatch
from genrec.tokenizer.fusion import build_fusion
from genrec.tokenizer.kmeans import check_points, kmeans
from genrec.tokenizer.registry import register_quantizer

logger = logging.getLogger(__name__)

BASE_LOSS_TERMS = ("recon", "codebook", "commit")
# History keys the training loop writes itself; regulariser terms must not reuse them.
RESERVED_HISTORY_KEYS = (*BASE_LOSS_TERMS, "loss", "collision_rate", "utilization", "dead_codes_reset", "seconds")


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def squared_distances(r: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """(B, d) residuals x (K, d) codes -> (B, K) squared Euclidean distances."""
    return (r * r).sum(dim=1, keepdim=True) - 2 * r @ codebook.T + (codebook * codebook).sum(dim=1)


def sinkhorn_assign(distances: torch.Tensor, epsilon: float = 0.003, iters: int = 50) -> torch.Tensor:
    """Balanced assignment (B,) long from squared distances (B, K), as LETTER's last level.

    The distances are centred and scaled to [-1, 1] (as LETTER does), ``Q = exp(-d / epsilon)``
    is alternately normalised so every code receives the same total mass and every item a row of
    mass 1 (Sinkhorn-Knopp, in the log domain so a small epsilon cannot overflow), and each item
    takes its row's argmax.
    """
    d = distances.detach().float()
    middle = (d.max() + d.min()) / 2
    amplitude = d.max() - middle + 1e-5
    log_q = -((d - middle) / amplitude) / epsilon
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True)
    return log_q.argmax(dim=1)


@register_quantizer("rq_vae")
class RQVAE(nn.Module, Quantizer):
    """Residual-quantised VAE over item content embeddings.

    Args:
        input_dim: d_in of the item embeddings (384 for all-MiniLM-L6-v2).
        codebook_sizes: K per level (default 3 x 256).
        latent_dim: d of the quantised latent (TIGER: 32).
        hidden_dims: encoder hidden sizes (TIGER: 512, 256, 128); the decoder mirrors them.
        beta: commitment weight.
        sinkhorn_last_level: during training, assign the last level by Sinkhorn balancing instead of
            the nearest code (LETTER); ``encode`` always uses the nearest code.
        sinkhorn_epsilon, sinkhorn_iters: Sinkhorn temperature and iterations (LETTER: 0.003, 50).
        kmeans_init_points: items whose residuals initialise the codebooks by k-means (a seeded
            random sample; at least max K, at most the catalogue).
        seed: fixes the initial weights, the k-means initialisation, batch order and code resets.
        fusion: optional fusion config (:func:`genrec.tokenizer.fusion.build_fusion`); then ``input_dim``
            is the packed width (sources + presence flags), the encoder reads the fusion's output and
            the decoder reconstructs the fusion's fixed target (see the module docstring).
    """

    trainable = True  # fit takes TRAINING_ARGUMENTS and regularisers
    takes_input_dim = True
    learns_fusion = True
    options = ("latent_dim", "hidden_dims", "beta", "sinkhorn_last_level", "sinkhorn_epsilon", "sinkhorn_iters", "kmeans_init_points")

    def __init__(self, input_dim: int, codebook_sizes=(256, 256, 256), latent_dim: int = 32, hidden_dims=(512, 256, 128),
                 beta: float = 0.25, sinkhorn_last_level: bool = False, sinkhorn_epsilon: float = 0.003, sinkhorn_iters: int = 50,
                 kmeans_init_points: int = 20_000, seed: int = 0, fusion: dict | None = None):
        super().__init__()
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes)
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ValueError(f"codebook_sizes must be a non-empty list of positive sizes, got {list(codebook_sizes)}")
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.beta = float(beta)
        self.sinkhorn_last_level, self.sinkhorn_epsilon, self.sinkhorn_iters = bool(sinkhorn_last_level), float(sinkhorn_epsilon), int(sinkhorn_iters)
        self.kmeans_init_points, self.seed = int(kmeans_init_points), int(seed)
        # Seeded construction that leaves the caller's global RNG untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.fusion = build_fusion(fusion) if fusion is not None else None
            if self.fusion is not None and self.fusion.input_dim != self.input_dim:
                raise ValueError(f"input_dim={self.input_dim} but the fusion's packed input is {self.fusion.input_dim} wide "
                                 f"(sources {self.fusion.layout.dims} + {self.fusion.layout.num_sources} presence flag(s))")
            encoder_in = self.fusion.out_dim if self.fusion is not None else self.input_dim
            target_dim = self.fusion.target_dim if self.fusion is not None else self.input_dim
            self.encoder = mlp([encoder_in, *self.hidden_dims, self.latent_dim])
            self.decoder = mlp([self.latent_dim, *reversed(self.hidden_dims), target_dim])
            # Placeholder values: fit() replaces them by k-means on the first residuals.
            self.codebooks = nn.ParameterList([nn.Parameter(0.01 * torch.randn(k, self.latent_dim)) for k in self.codebook_sizes])
        self.register_buffer("mean", torch.zeros(target_dim))
        self.register_buffer("std", torch.ones(target_dim))
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def device(self) -> torch.device:
        return self.mean.device

    # ---- forward ---------------------------------------------------------------------------------
    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Raw embeddings (B, d_in) -> standardised with the stored catalogue mean/std (with a fusion:
        the fusion's fixed target, the reconstruction target)."""
        x = x.to(self.device, torch.float32)
        if self.fusion is not None:
            x = self.fusion.target(x)
        return (x - self.mean) / self.std

    def _latent(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw x (B, d_in) -> (encoder output z, standardised target xs)."""
        xs = self.standardize(x)
        return self.encoder(self._encoder_input(xs, x)), xs

    def _encoder_input(self, xs: torch.Tensor, x: torch.Tensor | None) -> torch.Tensor:
        if self.fusion is None:
            return xs
        if x is None:
            raise ValueError("an RQ-VAE with a fusion needs the raw packed input: forward_standardized(xs, x)")
        return self.fusion(x.to(self.device, torch.float32))

    def quantize(self, z: torch.Tensor, balanced_last: bool = False):
        """Residual quantisation of z (B, d).

        Returns:
            codes (B, L) long; zq (B, d) = sum of the chosen codes (no straight-through applied);
            residuals, L tensors (B, d) entering each level; codebook loss; commitment loss (unweighted).
        """
        residual, zq = z, torch.zeros_like(z)
        codes, residuals = [], []
        codebook_loss, commit_loss = z.new_zeros(()), z.new_zeros(())
        for level, codebook in enumerate(self.codebooks):
            residuals.append(residual)
            distances = squared_distances(residual.detach(), codebook.detach())
            if balanced_last and level == len(self.codebooks) - 1:
                idx = sinkhorn_assign(distances, self.sinkhorn_epsilon, self.sinkhorn_iters)
            else:
                idx = distances.argmin(dim=1)
            # index_select, not codebook[idx]: the backward of advanced indexing accumulates in a
            # thread-dependent order on CPU, which made fits of one seed differ from run to run.
            e = codebook.index_select(0, idx)
            codebook_loss = codebook_loss + F.mse_loss(e, residual.detach())
            commit_loss = commit_loss + F.mse_loss(residual, e.detach())
            zq = zq + e
            residual = residual - e.detach()
            codes.append(idx)
        return torch.stack(codes, dim=1), zq, residuals, codebook_loss, commit_loss

    def forward_standardized(self, xs: torch.Tensor, x: torch.Tensor | None = None) -> QuantizerOutput:
        """Standardised x (B, d_in) -> :class:`QuantizerOutput` with loss terms recon, codebook, commit.

        With a fusion, ``xs`` is the standardised target and ``x`` the raw packed input (required).
        """
        z = self.encoder(self._encoder_input(xs, x))
        codes, zq, residuals, codebook_loss, commit_loss = self.quantize(z, balanced_last=self.sinkhorn_last_level and self.training)
        zq_ste = z + (zq - z).detach()
        x_hat = self.decoder(zq_ste)
        losses = {"recon": F.mse_loss(x_hat, xs), "codebook": codebook_loss, "commit": self.beta * commit_loss}
        return QuantizerOutput(z=z, zq=zq_ste, codes=codes, x_hat=x_hat, residuals=residuals, losses=losses)

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """Raw embeddings x (B, d_in) -> :class:`QuantizerOutput` (``x_hat`` is in standardised units)."""
        return self.forward_standardized(self.standardize(x), x)

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """(N, d_in) raw embeddings -> (N, L) long nearest-code assignments on x's device.

        Always the nearest code (Sinkhorn balancing is a training device only), ``batch_size`` rows
        at a time, so memory is bounded by one batch.
        """
        check_points(x, "embeddings")
        codes = [self.quantize(self._latent(chunk)[0])[0].to(x.device) for chunk in x.split(batch_size)]
        return torch.cat(codes) if codes else torch.zeros(0, len(self.codebook_sizes), dtype=torch.long, device=x.device)

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor, batch_size: int = 8192) -> float:
        """Mean squared error per standardised input dimension, decoding the hard codes."""
        total, count = 0.0, 0
        for chunk in x.split(batch_size):
            z, xs = self._latent(chunk)
            _, zq, _, _, _ = self.quantize(z)
            total += float((self.decoder(zq) - xs).pow(2).sum())
            count += xs.numel()
        return total / max(count, 1)

    # ---- training ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _init_codebooks(self, x: torch.Tensor, generator: torch.Generator, seed: int) -> None:
        """k-means initialisation of every level on the residuals of a seeded sample of the catalogue."""
        num_points = min(len(x), max(self.kmeans_init_points, max(self.codebook_sizes)))
        rows = torch.randperm(len(x), generator=generator)[:num_points].to(x.device)
        residual = torch.cat([self._latent(chunk)[0] for chunk in x[rows].split(8192)])
        for level, codebook in enumerate(self.codebooks):
            centroids, assign = kmeans(residual, codebook.shape[0], iters=25, seed=seed + level)
            codebook.copy_(centroids)
            residual = residual - centroids[assign]
        self.initialized.fill_(True)

    @torch.no_grad()
    def _reset_dead_codes(self, x: torch.Tensor, usage: list[torch.Tensor], generator: torch.Generator,
                          optimizer: torch.optim.Optimizer) -> int:
        """Set codes unused during the epoch to residuals of random distinct items at their level.

        Their optimiser moments are zeroed too, so stale Adam state does not drag them back.
        Returns the number of codes reset (all levels).
        """
        dead = [torch.nonzero(counts == 0).flatten() for counts in usage]
        most = max(len(d) for d in dead)
        if most == 0:
            return 0
        rows = torch.randperm(len(x), generator=generator)[:most].to(x.device)
        _, _, residuals, _, _ = self.quantize(self._latent(x[rows])[0])
        for level, codebook in enumerate(self.codebooks):
            codes = dead[level]
            if len(codes) == 0:
                continue
            codebook[codes] = residuals[level][: len(codes)]
            for moment in optimizer.state.get(codebook, {}).values():
                if torch.is_tensor(moment) and moment.shape == codebook.shape:
                    moment[codes] = 0
        return int(sum(len(d) for d in dead))

    def fit(self, x: torch.Tensor, regularizers: list[Regularizer] | None = None, epochs: int = 200, batch_size: int = 1024,
            lr: float = 1e-3, weight_decay: float = 0.0, seed: int | None = None, device: str | torch.device | None = None,
            dead_code_reset: bool = True, log_every: int = 0, show_progress: bool = False,
            callback: Callable[[int, dict], None] | None = None) -> dict:
        """Train on the catalogue x (N, d_in) of raw content embeddings.

        The first call stores the catalogue mean/std and k-means-initialises the codebooks; a
        later call continues training from the current state.

        Each epoch: ``reg.on_epoch_start(epoch, t, catalogue_codes)`` for every regulariser, with
        the (N, L) codes of the whole catalogue on the training device (encoded in batches at the
        start of the epoch); then for every shuffled batch, the quantiser's loss terms plus every
        regulariser's terms for ``RegularizerBatch(item_index, x (standardised), out, t, epoch)``
        are summed and minimised with AdamW over the quantiser's and the regularisers' parameters;
        then unused codes are reset (all epochs but the last, when ``dead_code_reset``).

        Args:
            x: (N, d_in) finite embeddings.
            regularizers: extra loss terms; their names must differ from each other and from
                ``RESERVED_HISTORY_KEYS``.
            epochs, batch_size, lr, weight_decay: AdamW training schedule (constant lr).
            seed: batch order, initialisation sample and resets (None = the constructor's seed). The
                global torch RNG is seeded with it for the duration of fit and restored afterwards.
            device: where to train (None = where the model is); the model stays there afterwards.
            dead_code_reset: reset codes unused during an epoch.
            log_every: log a line every this many epochs (0 = never).
            show_progress: tqdm bar over epochs.
            callback: ``callback(epoch, record)`` after every epoch, ``record`` = that epoch's history values.
        Returns:
            history: one list entry per epoch for ``loss`` (total), each base term (``recon``,
            ``codebook``, ``commit``) and each regulariser term (batch means), ``collision_rate``
            (catalogue, before dedup), ``utilization`` (list of per-level used-code shares),
            ``dead_codes_reset`` (count) and ``seconds`` (wall time of the epoch).
        """
        check_points(x, "embeddings")
        if x.shape[1] != self.input_dim:
            raise ValueError(f"embeddings have dimension {x.shape[1]}, the RQ-VAE was built for input_dim={self.input_dim}")
        for level, k in enumerate(self.codebook_sizes):
            if k > len(x):
                raise ValueError(f"codebook size {k} at level {level} is larger than the catalogue ({len(x)} items): "
                                 "k-means initialisation needs at least K items")
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got epochs={epochs}, batch_size={batch_size}")
        regularizers = list(regularizers or [])
        seed = self.seed if seed is None else int(seed)
        device = torch.device(device) if device is not None else self.device
        self.to(device)
        for reg in regularizers:
            reg.to(device)
        x = x.to(device, torch.float32)
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)  # for regularisers that draw from the global RNG
            if not bool(self.initialized):
                if self.fusion is not None:  # the fusion normalises each source; mean/std stay 0/1
                    self.fusion.fit_statistics(x)
                else:
                    self.mean.copy_(x.mean(dim=0))
                    self.std.copy_(x.std(dim=0, correction=0).clamp(min=1e-6))
                self._init_codebooks(x, generator, seed)
            params = list({id(p): p for module in (self, *regularizers) for p in module.parameters()}.values())
            optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
            history = self._train_epochs(x, regularizers, optimizer, generator, epochs, batch_size, dead_code_reset,
                                         log_every, show_progress, callback)
        self.eval()
        return history

    def _train_epochs(self, x, regularizers, optimizer, generator, epochs, batch_size, dead_code_reset, log_every,
                      show_progress, callback) -> dict:
        history: dict[str, list] = defaultdict(list)
        catalogue_codes = self.encode(x)
        bar = tqdm(range(epochs), desc="RQ-VAE", unit="epoch", disable=not show_progress)
        for epoch in bar:
            start = time.perf_counter()
            progress = epoch / max(1, epochs - 1)
            self.train()
            for reg in regularizers:
                reg.train()
                reg.on_epoch_start(epoch, progress, catalogue_codes)
            usage = [torch.zeros(k, dtype=torch.long, device=x.device) for k in self.codebook_sizes]
            sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=x.device))
            num_batches = 0
            for idx in torch.randperm(len(x), generator=generator).to(x.device).split(batch_size):
                xs = self.standardize(x[idx])
                out = self.forward_standardized(xs, x[idx])
                terms = dict(out.losses)
                batch = RegularizerBatch(item_index=idx, x=xs, out=out, progress=progress, epoch=epoch)
                for reg in regularizers:
                    for name, value in reg(batch).items():
                        if name in terms or name in RESERVED_HISTORY_KEYS:
                            raise ValueError(f"regulariser {type(reg).__name__} returned a term named '{name}', which is "
                                             f"already taken; terms so far: {sorted(terms)}")
                        terms[name] = value
                loss = sum(terms.values())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for level, k in enumerate(self.codebook_sizes):
                    usage[level] += torch.bincount(out.codes[:, level], minlength=k)
                for name, value in terms.items():
                    sums[name] += value.detach()
                sums["loss"] += loss.detach()
                num_batches += 1
            dead = self._reset_dead_codes(x, usage, generator, optimizer) if dead_code_reset and epoch < epochs - 1 else 0
            catalogue_codes = self.encode(x)  # after this epoch: logged now, handed to the regularisers next epoch

            for name, total in sums.items():
                history[name].append(float(total) / num_batches)
            distinct = torch.unique(catalogue_codes, dim=0).shape[0]
            history["collision_rate"].append(1.0 - distinct / len(x))
            history["utilization"].append([torch.unique(catalogue_codes[:, level]).numel() / k
                                           for level, k in enumerate(self.codebook_sizes)])
            history["dead_codes_reset"].append(dead)
            for reg in regularizers:  # per-epoch counts/unweighted values a regulariser keeps (e.g. rep/pairs)
                for key, value in dict(getattr(reg, "stats", {}) or {}).items():
                    history[key].append(float(value))
            history["seconds"].append(time.perf_counter() - start)
            record = {name: values[-1] for name, values in history.items()}
            bar.set_postfix(loss=f"{record['loss']:.4f}", recon=f"{record['recon']:.4f}", collisions=f"{record['collision_rate']:.4f}")
            if log_every and (epoch % log_every == 0 or epoch == epochs - 1):
                logger.info("epoch %d: loss %.4f recon %.4f collision rate %.4f dead codes reset %d (%.2fs)", epoch,
                            record["loss"], record["recon"], record["collision_rate"], dead, record["seconds"])
            if callback is not None:
                callback(epoch, record)
        return dict(history)

    # ---- serialisation -----------------------------------------------------------------------------
    def get_config(self) -> dict:
        """JSON-able constructor arguments (+ ``method``); ``from_config(get_config())`` rebuilds the architecture
        (``fusion`` only when there is one, so configs of plain RQ-VAEs are unchanged)."""
        return {"method": "rq_vae", "input_dim": self.input_dim, "codebook_sizes": list(self.codebook_sizes),
                "latent_dim": self.latent_dim, "hidden_dims": list(self.hidden_dims), "beta": self.beta,
                "sinkhorn_last_level": self.sinkhorn_last_level, "sinkhorn_epsilon": self.sinkhorn_epsilon,
                "sinkhorn_iters": self.sinkhorn_iters, "kmeans_init_points": self.kmeans_init_points, "seed": self.seed,
                **({"fusion": self.fusion.get_config()} if self.fusion is not None else {})}

    @classmethod
    def from_config(cls, config: dict) -> RQVAE:
        return cls(**{k: v for k, v in config.items() if k != "method"})
