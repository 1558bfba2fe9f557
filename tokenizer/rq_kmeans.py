"""RQ-KMeans: residual k-means on standardised embeddings, no trained encoder (docs/method.md section 6)."""

from __future__ import annotations

import torch

from genrec.tokenizer.base import Quantizer
from genrec.tokenizer.kmeans import check_points, kmeans, nearest
from genrec.tokenizer.registry import register_quantizer


@register_quantizer("rq_kmeans")
class RQKMeans(Quantizer):
    """Level l clusters the residual left by levels < l into ``codebook_sizes[l]`` centroids.

    Inputs are standardised per dimension (mean/std of the fitted catalogue, stored), then
    ``r^1 = x``, ``c^l = nearest centroid of r^l``, ``r^{l+1} = r^l - centroid``.

    Args:
        codebook_sizes: K per level (default 3 x 256).
        seed: seeds k-means++ (level l uses ``seed + l``) and the fitting sample.
        iters: Lloyd iterations per level.
        max_fit_points: fit the centroids on a seeded random sample of this many items (None = all);
            every item is still encoded. Bounds fitting time on very large catalogues.
    """

    trainable = False  # k-means, no gradient training: fit(x) takes no training settings nor regularisers
    takes_input_dim = False
    learns_fusion = False
    options = ("iters", "max_fit_points")

    def __init__(self, codebook_sizes=(256, 256, 256), seed: int = 0, iters: int = 25, max_fit_points: int | None = None):
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes)
        if not self.codebook_sizes or min(self.codebook_sizes) < 1:
            raise ValueError(f"codebook_sizes must be a non-empty list of positive sizes, got {list(codebook_sizes)}")
        self.seed, self.iters = int(seed), int(iters)
        self.max_fit_points = None if max_fit_points is None else int(max_fit_points)
        self.mean: torch.Tensor | None = None  # (d_in,)
        self.std: torch.Tensor | None = None  # (d_in,)
        self.centroids: list[torch.Tensor] = []  # L tensors (K_l, d_in)

    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std

    def fit(self, x: torch.Tensor, regularizers=None) -> dict:
        """Fit the centroids of every level on x (N, d_in).

        Returns {"residual_mse": [L floats]}: mean squared residual per standardised dimension
        after each level (on the fitting points).
        """
        if regularizers:
            raise ValueError("RQ-KMeans has no trainable encoder: regularisers cannot be attached")
        check_points(x, "embeddings")
        for level, k in enumerate(self.codebook_sizes):
            if k > x.shape[0]:
                raise ValueError(f"codebook size {k} at level {level} is larger than the catalogue ({x.shape[0]} items): "
                                 "k-means needs at least K items")
        x = x.float()
        self.mean, self.std = x.mean(dim=0), x.std(dim=0, correction=0).clamp(min=1e-6)
        if self.max_fit_points is not None and x.shape[0] > self.max_fit_points:
            sample = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.seed))[: self.max_fit_points]
            x = x[sample.to(x.device)]
        residual = self.standardize(x)
        self.centroids, residual_mse = [], []
        for level, k in enumerate(self.codebook_sizes):
            centroids, assign = kmeans(residual, k, iters=self.iters, seed=self.seed + level)
            self.centroids.append(centroids)
            residual = residual - centroids[assign]
            residual_mse.append(float(residual.pow(2).mean()))
        return {"residual_mse": residual_mse}

    def _check_fitted(self) -> None:
        if not self.centroids:
            raise RuntimeError("RQKMeans is not fitted: call fit(x) or load_state_dict(...) first")

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        """(N, d_in) -> (N, L) long codes on x's device, ``batch_size`` rows at a time."""
        self._check_fitted()
        check_points(x, "embeddings")
        codes = []
        for chunk in x.split(batch_size):
            residual = self.standardize(chunk.to(self.mean.device))
            levels = []
            for centroids in self.centroids:
                idx, _ = nearest(residual, centroids)
                levels.append(idx)
                residual = residual - centroids[idx]
            codes.append(torch.stack(levels, dim=1).to(x.device))
        return torch.cat(codes) if codes else torch.zeros(0, len(self.codebook_sizes), dtype=torch.long, device=x.device)

    @torch.no_grad()
    def reconstruction_error(self, x: torch.Tensor, batch_size: int = 8192) -> float:
        """Mean squared error per standardised input dimension of x vs the sum of its centroids."""
        self._check_fitted()
        total, count = 0.0, 0
        for chunk in x.split(batch_size):
            residual = self.standardize(chunk.to(self.mean.device))
            for centroids in self.centroids:
                idx, _ = nearest(residual, centroids)
                residual = residual - centroids[idx]
            total += float(residual.pow(2).sum())
            count += residual.numel()
        return total / max(count, 1)

    # ---- serialisation -----------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"method": "rq_kmeans", "codebook_sizes": list(self.codebook_sizes), "seed": self.seed, "iters": self.iters,
                "max_fit_points": self.max_fit_points}

    @classmethod
    def from_config(cls, config: dict) -> RQKMeans:
        return cls(**{k: v for k, v in config.items() if k != "method"})

    def state_dict(self) -> dict[str, torch.Tensor]:
        """``mean``, ``std`` (d_in,) and ``centroids.<level>`` (K_l, d_in); empty before fit."""
        if not self.centroids:
            return {}
        return {"mean": self.mean, "std": self.std, **{f"centroids.{level}": c for level, c in enumerate(self.centroids)}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = {"mean", "std", *(f"centroids.{level}" for level in range(len(self.codebook_sizes)))}
        if set(state) != expected:
            raise ValueError(f"RQKMeans state: expected keys {sorted(expected)}, got {sorted(state)}")
        for level, k in enumerate(self.codebook_sizes):
            shape = tuple(state[f"centroids.{level}"].shape)
            if shape != (k, state["mean"].shape[0]):
                raise ValueError(f"RQKMeans state: centroids.{level} has shape {shape}, expected ({k}, {state['mean'].shape[0]})")
        self.mean, self.std = state["mean"].float(), state["std"].float()
        self.centroids = [state[f"centroids.{level}"].float() for level in range(len(self.codebook_sizes))]
