from genrec.models.t5 import T5RecConfig, build_t5

__all__ = ["T5RecConfig", "build_t5"]
