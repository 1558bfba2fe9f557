from genrec.training.checkpoint import (
           atomic_write_json,
           atomic_write_text,
           latest_checkpoint,
           list_checkpoints,
)
from genrec.training.hardware import choose_num_threads, resolve_mixed_precision
from genrec.training.sampler import LengthBucketBatchSampler
from genrec.training.trainer import TrainingConfig, TrainResult, train

__all__ = ["LengthBucketBatchSampler", "TrainResult", "TrainingConfig", "atomic_write_json", "atomic_write_text",
           "latest_checkpoint", "list_checkpoints", "choose_num_threads", "resolve_mixed_precision", "train"]
