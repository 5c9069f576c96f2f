"""blendkit: ensembling LLMs — rank candidates (PairRanker), fuse the best (GenFuser), pack models (PackLLM)."""

__version__ = "0.1.0"
