"""PairRanker: pairwise cross-encoder ranking of LLM candidates.

    from blendkit.pairranker import Ranker
    ranker = Ranker.from_pretrained("path/to/ranker")
    ranker.rank(["instruction"], [["answer 1", "answer 2", "answer 3"]])
"""

from transformers import AutoConfig, AutoModel

from .config import PairRankerConfig
from .inference import Ranker, RankResult
from .model import PairRankerModel, PairRankerOutput

# So AutoConfig / AutoModel recognise saved rankers too.
AutoConfig.register(PairRankerConfig.model_type, PairRankerConfig, exist_ok=True)
AutoModel.register(PairRankerConfig, PairRankerModel, exist_ok=True)

__all__ = ["PairRankerConfig", "PairRankerModel", "PairRankerOutput", "Ranker", "RankResult"]
