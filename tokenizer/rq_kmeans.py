"""RQ-KMeans: residual k-means on the (standardised) embeddings; no training of an encoder."""

from __future__ import annotations

import torch

from genrec.tokenizer.base import Quantizer
from genrec.tokenizer.kmeans import kmeans, nearest
from genrec.tokenizer.registry import register_quantizer


@register_quantizer("rq_kmeans")
class RQKMeans(Quantizer):
    """Level l clusters the residual left by levels < l into ``codebook_sizes[l]`` centroids."""

    def __init__(self, codebook_sizes=(256, 256, 256), seed: int = 0, iters: int = 25):
        self.codebook_sizes = tuple(int(k) for k in codebook_sizes)
        self.seed, self.iters = int(seed), int(iters)
        self.mean = self.std = None
        self.centroids: list[torch.Tensor] = []

    def fit(self, x: torch.Tensor, regularizers=None, **kwargs) -> dict:
        if regularizers:
            raise ValueError("RQ-KMeans has no trainable encoder: regularisers cannot be attached")
        x = x.float()
        self.mean, self.std = x.mean(dim=0), x.std(dim=0).clamp(min=1e-6)
        residual = (x - self.mean) / self.std
        self.centroids = []
        for level, k in enumerate(self.codebook_sizes):
            c, assign = kmeans(residual, k, iters=self.iters, seed=self.seed + level)
            self.centroids.append(c)
            residual = residual - c[assign]
        return {"recon_error": [residual.pow(2).sum(dim=1).mean().item()]}

    def encode(self, x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
        if not self.centroids:
            raise RuntimeError("RQKMeans.encode called before fit")
        out = []
        for chunk in x.float().split(batch_size):
            residual = (chunk - self.mean) / self.std
            codes = []
            for c in self.centroids:
                idx, _ = nearest(residual, c)
                codes.append(idx)
                residual = residual - c[idx]
            out.append(torch.stack(codes, dim=1))
        return torch.cat(out)

    def get_config(self) -> dict:
        return {"method": "rq_kmeans", "codebook_sizes": list(self.codebook_sizes), "seed": self.seed, "iters": self.iters}

    def state_dict(self) -> dict:
        state = {f"centroids.{i}": c for i, c in enumerate(self.centroids)}
        if self.mean is not None:
            state |= {"mean": self.mean, "std": self.std}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.mean, self.std = state["mean"], state["std"]
        self.centroids = [state[f"centroids.{i}"] for i in range(len(self.codebook_sizes))]
