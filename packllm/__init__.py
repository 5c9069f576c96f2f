"""PackLLM: test-time fusion of causal LMs with per-prompt weights that minimise the prompt's perplexity."""

from .generate import Generation, PackLLMGenerator
from .members import Member
from .scoring import continuation_nll, prompt_logprobs
from .weights import (
           WEIGHTINGS,
           PromptLogProbs,
           exact_weights,
           greedy_weights,
           objective,
           shrunk_weights,
           sim_weights,
           solve,
           uniform_weights,
)

__all__ = ["Generation", "Member", "PackLLMGenerator", "PromptLogProbs", "WEIGHTINGS", "continuation_nll",
           "exact_weights", "greedy_weights", "objective", "prompt_logprobs", "shrunk_weights", "sim_weights", "solve",
           "uniform_weights"]
