"""Fused generation on tiny random members: exactness for one member, batching, stops, sampling, mixed vocabularies."""

from __future__ import annotations

import pytest
import torch

from blendkit.packllm import Member, PackLLMGenerator
from blendkit.packllm.scoring import aligned_logprobs, continuation_nll, prompt_logprobs

PROMPTS = ["What is the capital of France?", "Write one short sentence about the sea, please.", "Hi"]


@pytest.fixture(scope="module")
def pair(tiny_llama_a, tiny_llama_b):
    a = Member.load(tiny_llama_a)
    return a, Member.load(tiny_llama_b, a.tokenizer)


@pytest.fixture(scope="module")
def mixed(tiny_llama_a, tiny_gemma):
    a = Member.load(tiny_llama_a)
    return a, Member.load(tiny_gemma, a.tokenizer)


def _reference(member: Member, prompts, max_new_tokens):
    """The member's own `generate` (greedy), on the same left-padded chat-formatted batch."""
    tokenizer = member.tokenizer
    tokenizer.padding_side = "left"
    batch = tokenizer([member.format_prompt(p, True) for p in prompts], return_tensors="pt", padding=True)
    out = member.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id)
    eos = member.eos_ids()
    rows = []
    for row in out[:, batch["input_ids"].shape[1]:].tolist():
        ids = []
        for token in row:
            if token in eos:
                break
            ids.append(token)
        rows.append(ids)
    return rows


def test_one_member_reproduces_its_own_greedy_generate(pair):
    member = pair[0]
    generator = PackLLMGenerator([member])
    fused = generator.generate(PROMPTS, max_new_tokens=12)
    assert [g.token_ids for g in fused] == _reference(member, PROMPTS, 12)
    assert all(g.weights == [1.0] for g in fused)


def test_a_vertex_weight_reproduces_that_member_inside_a_pack(pair):
    generator = PackLLMGenerator(list(pair))
    weights = torch.tensor([[0.0, 1.0]] * len(PROMPTS))
    fused = generator.generate(PROMPTS, max_new_tokens=10, weights=weights, batch_size=2)
    assert [g.token_ids for g in fused] == _reference(pair[1], PROMPTS, 10)


def test_fused_step_is_the_weighted_log_prob_argmax(pair):
    """One step by hand: argmax of λ·log p over the members equals the generator's first token."""
    generator = PackLLMGenerator(list(pair))
    weights = torch.tensor([[0.3, 0.7]])
    fused = generator.generate(PROMPTS[:1], max_new_tokens=1, weights=weights)[0]
    logp = []
    for member in pair:
        ids = member.tokenizer(member.format_prompt(PROMPTS[0], True), return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            logp.append(torch.log_softmax(member.model(ids).logits[0, -1], dim=-1))
    expected = int(torch.argmax(0.3 * logp[0] + 0.7 * logp[1]))
    assert fused.token_ids == [expected] or (fused.token_ids == [] and expected in pair[0].eos_ids())


def test_batching_does_not_change_results(pair):
    generator = PackLLMGenerator(list(pair), weighting="exact")
    together = generator.generate(PROMPTS, max_new_tokens=8, batch_size=3)
    alone = [generator.generate([p], max_new_tokens=8)[0] for p in PROMPTS]
    assert [g.token_ids for g in together] == [g.token_ids for g in alone]
    for a, b in zip(together, alone):
        assert a.weights == pytest.approx(b.weights, abs=1e-5)


def test_max_new_tokens_stop_strings_and_finish_reasons(pair):
    generator = PackLLMGenerator(list(pair))
    long = generator.generate(PROMPTS[:1], max_new_tokens=6, min_new_tokens=6)[0]
    assert long.tokens == 6 and long.finish_reason == "length"
    free = generator.generate(PROMPTS[:1], max_new_tokens=20)[0]
    assert len(free.text) > 3, "the tiny model should produce some text to cut"
    stop = free.text[2:4]
    cut = generator.generate(PROMPTS[:1], max_new_tokens=20, stop=[stop])[0]
    assert cut.finish_reason == "stop" and stop not in cut.text
    assert free.text.startswith(cut.text)
    # the token count stops where the kept text ends: the tokens hold the text, one token fewer does not
    decode = pair[0].tokenizer.decode
    assert cut.tokens == len(cut.token_ids) and cut.token_ids == free.token_ids[:cut.tokens]
    assert decode(cut.token_ids, skip_special_tokens=True).startswith(cut.text)
    assert not cut.token_ids or not decode(cut.token_ids[:-1], skip_special_tokens=True).startswith(cut.text)
    assert cut.tokens < free.tokens


def test_tokens_before_a_stop_string_keep_characters_split_over_byte_tokens(pair):
    from blendkit.packllm.generate import _drop_tokens_past

    tokenizer = pair[0].tokenizer
    ids = tokenizer.encode("café😀\n\nQ: next", add_special_tokens=False)
    # the emoji is split over byte tokens: some prefix ends inside it
    assert any(tokenizer.decode(ids[:n]).endswith("\ufffd") for n in range(1, len(ids)))
    kept = list(ids)
    _drop_tokens_past(kept, "café😀", tokenizer)
    assert tokenizer.decode(kept).startswith("café😀") and not tokenizer.decode(kept[:-1]).startswith("café😀")
    assert kept == ids[:len(kept)]
    empty = list(ids)
    _drop_tokens_past(empty, "", tokenizer)
    assert empty == []


def test_sampling_is_seeded_and_top_p_near_zero_is_greedy(pair):
    generator = PackLLMGenerator(list(pair))
    first = generator.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=1.5, seed=3)
    again = generator.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=1.5, seed=3)
    assert [g.token_ids for g in first] == [g.token_ids for g in again]
    greedy = generator.generate(PROMPTS, max_new_tokens=8)
    hot = generator.generate(PROMPTS, max_new_tokens=8, do_sample=True, temperature=50.0, seed=1)
    assert [g.token_ids for g in hot] != [g.token_ids for g in greedy], "sampling must sample"
    nucleus = generator.generate(PROMPTS, max_new_tokens=8, do_sample=True, top_p=1e-6, seed=0)
    assert [g.token_ids for g in nucleus] == [g.token_ids for g in greedy]
    with pytest.raises(ValueError, match="top_p"):
        generator.generate(PROMPTS, top_p=0)
    with pytest.raises(ValueError, match="weights must be"):
        generator.generate(PROMPTS, weights=torch.ones(1, 2))


def test_weights_for_every_weighting_on_real_tokens(pair):
    generator = PackLLMGenerator(list(pair))
    scores = prompt_logprobs(list(pair), PROMPTS[:2], top_m=None)
    for weighting in ("uniform", "sim", "greedy", "exact", "shrunk"):
        weights = generator.weights(PROMPTS[:2], weighting=weighting)
        assert weights.shape == (2, 2)
        assert torch.allclose(weights.sum(1), torch.ones(2), atol=1e-5) and (weights >= 0).all()
    exact = generator.weights(PROMPTS[:2], weighting="exact")
    greedy = generator.weights(PROMPTS[:2], weighting="greedy")
    from blendkit.packllm.weights import objective

    for i, s in enumerate(scores):  # on the true objective, exact beats greedy and every single member
        assert objective(s, exact[i].double()) <= objective(s, greedy[i].double()) + 1e-4
        assert objective(s, exact[i].double()) <= min(s.member_nll) + 1e-4


def test_the_default_weighting_is_exact_shrunk_toward_the_primary(pair):
    generator = PackLLMGenerator(list(pair), move=0.25)
    assert generator.weighting == "shrunk"
    exact = generator.weights(PROMPTS[:2], weighting="exact")
    shrunk = generator.weights(PROMPTS[:2])
    primary = torch.tensor([1.0, 0.0])
    assert torch.allclose(shrunk, primary + 0.25 * (exact - primary), atol=1e-5)
    with pytest.raises(ValueError, match="move"):
        PackLLMGenerator(list(pair), move=-0.1)


def test_continuation_nll_of_a_single_member_is_its_own_nll(pair):
    member = pair[0]
    prompt, answer = "Name a colour.", "Blue is a colour."
    nll, count = continuation_nll([member], [prompt], [answer], torch.ones(1, 1))
    text = prompt + "\n\n" + answer
    encoding = member.tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
    with torch.inference_mode():
        logp = torch.log_softmax(member.model(encoding["input_ids"]).logits[0], dim=-1)
    starts = encoding["offset_mapping"][0, :, 0]
    ids = encoding["input_ids"][0]
    scored = [j for j in range(1, len(ids)) if starts[j] >= len(prompt) + 2]
    expected = -torch.stack([logp[j - 1, ids[j]] for j in scored]).mean()
    assert int(count) == len(scored)
    assert float(nll) == pytest.approx(float(expected), abs=1e-4)


def test_members_with_different_tokenizers_align_and_generate(mixed):
    primary, other = mixed
    assert primary.shares_vocabulary and not other.shares_vocabulary
    aligned = aligned_logprobs(list(mixed), ["Hello world, how are you today?"])[0]
    assert aligned.logp.shape[0] == 2 and aligned.logp.shape[2] == len(primary.tokenizer)
    assert aligned.targets.numel() >= 5                      # word boundaries are shared
    assert torch.allclose(aligned.logp.exp().sum(-1), torch.ones(2, aligned.targets.numel()), atol=1e-4)
    generator = PackLLMGenerator(list(mixed), weighting="exact")
    out = generator.generate(PROMPTS, max_new_tokens=6)
    assert len(out) == 3 and all(len(g.weights) == 2 for g in out)
    # the other member alone (λ = e_2) still yields text in the primary's tokens
    solo = generator.generate(PROMPTS[:1], max_new_tokens=4, weights=torch.tensor([[0.0, 1.0]]))[0]
    assert solo.tokens >= 1


def test_vocab_map_carries_shared_strings_over(mixed):
    primary, other = mixed
    world = other.tokenizer.encode(" world", add_special_tokens=False)
    assert len(world) == 1
    logits = torch.full((1, len(other.tokenizer)), -30.0)
    logits[0, world[0]] = 30.0                               # the member is sure the next text is " world"
    logp = other.log_probs(logits)[0]
    target = primary.tokenizer.encode(" world", add_special_tokens=False)[0]
    unrelated = primary.tokenizer.encode(" banana", add_special_tokens=False)[0]
    assert float(logp[target]) > -5 and float(logp[unrelated]) < -15
    # a member sure the answer is over says so in the primary's vocabulary: EOS is not vetoed
    done = torch.full((1, len(other.tokenizer)), -30.0)
    done[0, other.tokenizer.eos_token_id] = 30.0
    assert float(other.log_probs(done)[0, primary.tokenizer.eos_token_id]) > -1


def test_a_mixed_vocabulary_member_reads_the_same_text_as_the_primary(mixed):
    """Replaying a fused generation step by step: the other member is fed exactly the primary's text, and
    its cached state equals a fresh forward over its prompt tokens + the tokens it was fed."""
    from blendkit.packllm.generate import _MemberState

    primary, other = mixed
    generator = PackLLMGenerator(list(mixed), chat=False)
    out = generator.generate(["Hello there"], max_new_tokens=6, min_new_tokens=6, weights=torch.tensor([[0.5, 0.5]]))[0]
    state = _MemberState(other, ["Hello there"], primary.tokenizer)
    fed_ids: list[int] = []
    encode = state._encode_piece
    state._encode_piece = lambda text: fed_ids.extend(encode(text)) or encode(text)
    for n in range(1, len(out.token_ids) + 1):
        state.advance(torch.tensor(out.token_ids[n - 1:n]), [out.token_ids[:n]], torch.zeros(1, dtype=torch.bool))
    assert state.fed[0] == primary.tokenizer.decode(out.token_ids, skip_special_tokens=True,
                                                    clean_up_tokenization_spaces=False)
    assert fed_ids, "the other member must have been fed tokens"
    prompt_ids = other.tokenizer("Hello there", return_tensors="pt")["input_ids"]
    ids = torch.cat([prompt_ids, torch.tensor([fed_ids])], dim=1)
    with torch.inference_mode():
        expected = other.log_probs(other.model(input_ids=ids).logits[:, -1])
    assert torch.allclose(state.logp, expected, atol=1e-4)


def test_long_prompts_are_scored_from_their_start_and_cut_to_fit_for_generation(pair):
    generator = PackLLMGenerator(list(pair))
    long = "word " * 9000                                     # longer than the members' 8,192 positions
    scores = prompt_logprobs(list(pair), [long])[0]
    assert scores.logp.shape[1] == 511                        # the first 512 tokens predict 511 positions
    assert generator.weights([long]).shape == (1, 2)
    out = generator.generate([long + "Say hi."], max_new_tokens=2, min_new_tokens=2)[0]
    assert out.tokens == 2
