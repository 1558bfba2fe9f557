"""RQ-VAE (TIGER): MLP encoder, residual quantisation with the straight-through estimator, MLP decoder.

METHOD.md section 1. Loss = ||x - x_hat||^2 + sum_l ||sg[r_l] - e_l||^2 + beta ||r_l - sg[e_l]||^2
(mean squared errors; beta = 0.25). Codebooks are initialised by k-means on the first encoder
outputs, codes unused during an epoch are reset to random residuals of their level, and
regularisers (:class:`genrec.tokenizer.base.Regularizer`) add their named terms to the loss, so
collision-aware training needs no change here.

Defaults chosen for CPU (documented in the README): AdamW lr 1e-3, batch 1024; TIGER trains far
longer (Adagrad, 20k epochs) on a GPU. Progress ``t = epoch / max(1, epochs - 1)``.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from torch import nn

from genrec.tokenizer.base import Quantizer, QuantizerOutput, Regularizer, RegularizerBatch
from genrec.tokenizer.kmeans import kmeans, nearest
from genrec.tokenizer.registry import register_quantizer


def check_finite(x: torch.Tensor, what: str = "embeddings") -> None:
    bad = ~torch.isfinite(x).all(dim=1)
    if bad.any():
        rows = torch.nonzero(bad).flatten()
        raise ValueError(f"{what} contain NaN/inf in {len(rows)} row(s): {rows[:10].tolist()}")


def mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def sinkhorn_assign(distances: torch.Tensor, epsilon: float = 0.05, iters: int = 3) -> torch.Tensor:
    """Balanced assignment (B,) from squared distances (B, K) by Sinkhorn-Knopp (LETTER-style last level)."""
    d = distances / distances.amax(dim=1, keepdim=True).clamp(min=1e-12)
    q = torch.exp(-(d - d.amin(dim=1, keepdim=True)) / epsilon)
    for _ in range(iters):
        q = q / q.sum(dim=0, keepdim=True).clamp(min=1e-12)
        q = q / q.sum(dim=1, keepdim=True).clamp(min=1e-12)
    return q.argmax(dim=1)


@register_quantizer("rq_vae")
class RQVAE(nn.Module, Quantizer):
    """Residual-quantised VAE over item embeddings.

    Args:
        input_dim: d_in of the item embeddings.
        codebook_sizes: K per level (default 3 x 256).
        latent_dim: d of the quantised latent (TIGER: 32).
        hidden_dims: encoder hidden sizes (decoder mirrors them).
        beta: commitment weight.
        sinkhorn_last_level: balanced (Sinkhorn) assignment of the last level during training.
    """

    def __init__(self, input_dim: int, codebook_sizes=(256, 256, 256), latent_dim: int = 32, hidden_dims=(512, 256, 128),
                 beta: float = 0.25, sinkhorn_last_level: bool = False, seed: int = 0):
        super().__init__()
        self.input_dim, self.latent_dim = int(input_dim), int(latent_dim)
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes)
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.beta, self.sinkhorn_last_level, self.seed = float(beta), bool(sinkhorn_last_level), int(seed)
        torch.manual_seed(self.seed)
        self.encoder = mlp([self.input_dim, *self.hidden_dims, self.latent_dim])
        self.decoder = mlp([self.latent_dim, *reversed(self.hidden_dims), self.input_dim])
        self.codebooks = nn.ParameterList([nn.Parameter(torch.randn(k, self.latent_dim) * 0.01) for k in self.codebook_sizes])
        self.register_buffer("mean", torch.zeros(self.input_dim))
        self.register_buffer("std", torch.ones(self.input_dim))
        self.register_buffer("initialized", torch.tensor(False))

    # ---- forward ---------------------------------------------------------------------------------
    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def quantize(self, z: torch.Tensor, balanced_last: bool = False):
        """Residual quantisation of z (B, d): hard codes (B, L), zq (B, d) without STE, residuals, quant loss."""
        residual, zq = z, torch.zeros_like(z)
        codes, residuals, loss = [], [], z.new_zeros(())
        for level, book in enumerate(self.codebooks):
            residuals.append(residual)
            d = (residual.detach().pow(2).sum(1, keepdim=True) - 2 * residual.detach() @ book.T + book.pow(2).sum(1))
            last = level == len(self.codebooks) - 1
            idx = sinkhorn_assign(d) if (balanced_last and last) else d.argmin(dim=1)
            e = book[idx]
            loss = loss + (residual.detach() - e).pow(2).mean() + self.beta * (residual - e.detach()).pow(2).mean()
            zq = zq + e
            residual = residual - e
            codes.append(idx)
        return torch.stack(codes, dim=1), zq, residuals, loss

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        """x (B, d_in) raw embeddings -> :class:`QuantizerOutput` (loss terms ``recon``, ``quant``)."""
        xs = self.standardize(x)
        z = self.encoder(xs)
        codes, zq, residuals, quant_loss = self.quantize(z, balanced_last=self.sinkhorn_last_level and self.training)
        zq_ste = z + (zq - z).detach()
        x_hat = self.decoder(zq_ste)
        recon = (x_hat - xs).pow(2).mean()
        return QuantizerOutput(z=z, zq=zq_ste, codes=codes, x_hat=x_hat, residuals=residuals, losses={"recon": recon, "quant": quant_loss})

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        was = self.training
        self.eval()
        out = [self.quantize(self.encoder(self.standardize(chunk)))[0] for chunk in x.split(batch_size)]
        self.train(was)
        return torch.cat(out) if out else torch.zeros(0, len(self.codebook_sizes), dtype=torch.long)

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor, batch_size: int = 8192) -> float:
        """Mean squared error per standardised input dimension, on hard codes."""
        total, n = 0.0, 0
        for chunk in x.split(batch_size):
            xs = self.standardize(chunk)
            _, zq, _, _ = self.quantize(self.encoder(xs))
            total += (self.decoder(zq) - xs).pow(2).mean(dim=1).sum().item()
            n += len(chunk)
        return total / max(n, 1)

    # ---- training ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _init_codebooks(self, x: torch.Tensor, max_points: int = 20000) -> None:
        """k-means initialisation of every level on the residuals of (a sample of) the catalogue."""
        gen = torch.Generator().manual_seed(self.seed)
        sample = x[torch.randperm(len(x), generator=gen)[:max_points]]
        residual = self.encoder(self.standardize(sample))
        for level, book in enumerate(self.codebooks):
            centroids, assign = kmeans(residual, book.shape[0], iters=20, seed=self.seed + level)
            book.data.copy_(centroids)
            residual = residual - centroids[assign]
        self.initialized.fill_(True)

    @torch.no_grad()
    def _reset_dead_codes(self, x: torch.Tensor, usage: list[torch.Tensor], generator: torch.Generator) -> int:
        """Re-initialise codes unused during the epoch to random residuals of their level."""
        dead_total = 0
        _, _, residuals, _ = self.quantize(self.encoder(self.standardize(x)))
        for level, book in enumerate(self.codebooks):
            dead = torch.nonzero(usage[level] == 0).flatten()
            if len(dead):
                pick = torch.randint(len(x), (len(dead),), generator=generator)
                book.data[dead] = residuals[level][pick]
                dead_total += len(dead)
        return dead_total

    def fit(self, x: torch.Tensor, regularizers: list[Regularizer] | None = None, epochs: int = 200, batch_size: int = 1024,
            lr: float = 1e-3, weight_decay: float = 0.0, dead_code_reset: bool = True, log_every: int = 0, callback=None, **kwargs) -> dict:
        """Train on the catalogue x (N, d_in). Returns per-epoch history (every loss term and regulariser term,
        collision rate, per-level utilisation, dead codes reset, seconds)."""
        if kwargs:
            raise TypeError(f"RQVAE.fit got unknown argument(s) {sorted(kwargs)}")
        x = x.float()
        check_finite(x)
        if x.shape[1] != self.input_dim:
            raise ValueError(f"embeddings have dimension {x.shape[1]}, the RQ-VAE was built for {self.input_dim}")
        if max(self.codebook_sizes) > len(x):
            raise ValueError(f"codebook size {max(self.codebook_sizes)} is larger than the catalogue ({len(x)} items)")
        regularizers = list(regularizers or [])
        self.mean.copy_(x.mean(dim=0))
        self.std.copy_(x.std(dim=0).clamp(min=1e-6))
        torch.manual_seed(self.seed)
        if not bool(self.initialized):
            self._init_codebooks(x)
        params = list(self.parameters()) + [p for r in regularizers for p in r.parameters()]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(self.seed)
        history: dict[str, list] = defaultdict(list)
        self.train()
        for reg in regularizers:
            reg.train()
        catalogue_codes = self.encode(x)
        for epoch in range(epochs):
            start = time.perf_counter()
            progress = epoch / max(1, epochs - 1)
            for reg in regularizers:
                reg.on_epoch_start(epoch, progress, catalogue_codes)
            usage = [torch.zeros(k, dtype=torch.long) for k in self.codebook_sizes]
            sums: dict[str, float] = defaultdict(float)
            batches = 0
            for idx in torch.randperm(len(x), generator=gen).split(batch_size):
                out = self(x[idx])
                terms = dict(out.losses)
                for reg in regularizers:
                    for name, value in reg(RegularizerBatch(item_index=idx, x=x[idx], out=out, progress=progress, epoch=epoch)).items():
                        if name in terms:
                            raise ValueError(f"two loss terms are named '{name}'; regularisers must use distinct names")
                        terms[name] = value
                loss = sum(v for k, v in terms.items() if not k.startswith("count/"))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for level in range(len(self.codebook_sizes)):
                    usage[level] += torch.bincount(out.codes[:, level], minlength=self.codebook_sizes[level])
                for k, v in terms.items():
                    sums[k] += float(v.detach())
                sums["loss"] += float(loss.detach())
                batches += 1
            dead = self._reset_dead_codes(x, usage, gen) if dead_code_reset and epoch < epochs - 1 else 0
            for k, v in sums.items():
                history[k].append(v / batches if not k.startswith("count/") else v)
            # The catalogue's codes after this epoch: logged now, and handed to the regularisers next epoch.
            catalogue_codes = self.encode(x)
            distinct = torch.unique(catalogue_codes, dim=0).shape[0]
            history["collision_rate"].append(1.0 - distinct / len(x))
            history["utilization"].append([torch.unique(catalogue_codes[:, level]).numel() / k for level, k in enumerate(self.codebook_sizes)])
            history["dead_codes_reset"].append(dead)
            history["seconds"].append(time.perf_counter() - start)
            if log_every and (epoch % log_every == 0 or epoch == epochs - 1):
                print(f"epoch {epoch}: loss {history['loss'][-1]:.4f} recon {history['recon'][-1]:.4f} "
                      f"collision {history['collision_rate'][-1]:.4f} dead {dead}", flush=True)
            if callback is not None:
                callback(epoch, {k: v[-1] for k, v in history.items()})
        self.eval()
        return dict(history)

    # ---- serialisation -----------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"method": "rq_vae", "input_dim": self.input_dim, "codebook_sizes": list(self.codebook_sizes), "latent_dim": self.latent_dim,
                "hidden_dims": list(self.hidden_dims), "beta": self.beta, "sinkhorn_last_level": self.sinkhorn_last_level, "seed": self.seed}
