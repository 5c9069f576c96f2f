"""drop_prior.py: taking the model prior out of saved max_logits scores gives the text-only ranking."""

import importlib
import json
import sys

import torch
from helpers import ROOT

from blendkit.pairranker import PairRankerModel, Ranker

sys.path.append(str(ROOT / "benchmarks"))   # after tests/: tests/deepspeed_cpu.py keeps its name
drop_prior = importlib.import_module("drop_prior")


def test_the_text_only_scores_are_the_ranker_without_model_names(tiny_backbone, tmp_path):
    torch.manual_seed(0)
    model, tokenizer = PairRankerModel.from_backbone(tiny_backbone, source_max_length=16, candidate_max_length=24,
                                                     head_hidden_size=16, use_model_prior=True,
                                                     model_names=["a", "b", "c"])
    with torch.no_grad():
        model.model_prior.offsets.copy_(torch.tensor([1.5, -2.0, 0.5]))
    model.eval().save_pretrained(tmp_path / "model")
    ranker = Ranker(model, tokenizer)
    texts = ["one answer", "a second, longer answer", "third", "the fourth answer here"]
    models = ["a", "b", "c", "unknown"]
    [aware] = ranker.rank("Say something.", texts, models=models)
    [text_only] = ranker.rank("Say something.", texts)
    assert aware.ranks != text_only.ranks          # the prior matters here, so the check below can fail
    row = {"id": "r0", "candidates": [{"model": m, "rank": r, "ranker_score": s}
                                      for m, r, s in zip(models, aware.ranks, aware.scores)]}
    (tmp_path / "predictions.jsonl").write_text(json.dumps(row) + "\n")
    drop_prior.main([str(tmp_path)])
    derived = json.loads((tmp_path / "predictions_text_only.jsonl").read_text())["candidates"]
    assert [c["rank"] for c in derived] == text_only.ranks
    shift = [c["ranker_score"] - s for c, s in zip(derived, text_only.scores)]
    assert max(shift) - min(shift) < 1e-4         # equal up to the row's constant Σ offsets
