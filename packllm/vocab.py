"""Character-level vocabulary alignment, so that members with different tokenizers can be fused.

The fused model speaks the *primary* member's tokens (the first member). Another member's next-token
distribution p over its own vocabulary is carried over to a primary token u as the mass of the
member's tokens whose text is *compatible* with u's text — one is a prefix of the other:

    c(u) = Σ_{v : text(v) starts with text(u), or text(u) starts with text(v)} p(v)

i.e. the member's probability that the next characters agree with u, read up to the shorter of the
two tokens. c is then renormalised (with a small floor, so no token gets log 0) into log-probs. The
member's end-of-sequence tokens carry their mass to the primary's. Other tokens without text of their
own (special tokens, bytes of an incomplete UTF-8 character) carry no mass.
Members whose vocabulary equals the primary's skip all this (`same_vocabulary`).
"""

from __future__ import annotations

import warnings

import torch

FLOOR = 1e-9


def same_vocabulary(a, b) -> bool:
    """True when two tokenizers map the same strings to the same ids (then no alignment is needed)."""
    return a is b or (len(a) == len(b) and a.get_vocab() == b.get_vocab())


def token_texts(tokenizer) -> list[str | None]:
    """The surface text of every token id; None for special tokens and incomplete UTF-8 bytes.

    Decoding each id after an anchor token ("a") keeps the leading spaces that decoders strip from
    the first token of a sequence.
    """
    anchor = tokenizer.encode("a", add_special_tokens=False)
    prefix = tokenizer.decode(anchor, clean_up_tokenization_spaces=False)
    special = set(tokenizer.all_special_ids)
    special.update(i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special)
    decoded = tokenizer.batch_decode([anchor + [i] for i in range(len(tokenizer))], clean_up_tokenization_spaces=False)
    texts: list[str | None] = []
    for i, text in enumerate(decoded):
        if i in special or not text.startswith(prefix):
            texts.append(None)
            continue
        text = text[len(prefix):]
        texts.append(text if text and "\ufffd" not in text else None)
    return texts


class VocabMap:
    """Carries a member's next-token distributions over to the primary vocabulary (see module doc)."""

    def __init__(self, member_tokenizer, primary_tokenizer, member_eos: set[int] = frozenset(),
                 primary_eos: set[int] = frozenset()):
        source = token_texts(member_tokenizer)
        target = token_texts(primary_tokenizer)
        rows, cols = _compatible_pairs(source, target)
        for m in member_eos:                 # "the answer ends here" carries over from EOS to EOS
            for p in primary_eos:
                rows.append(m)
                cols.append(p)
        self.source_size, self.target_size = len(source), len(target)
        # compatibility as a sparse [V_primary, V_member] 0/1 matrix (CSR): c = matrix @ p
        primary = torch.tensor(cols, dtype=torch.long)
        member = torch.tensor(rows, dtype=torch.long)
        key = torch.unique(primary * self.source_size + member)          # sorted, without duplicates
        primary, member = key // self.source_size, key % self.source_size
        crow = torch.zeros(self.target_size + 1, dtype=torch.long)
        crow[1:] = torch.cumsum(torch.bincount(primary, minlength=self.target_size), 0)
        with warnings.catch_warnings():                                  # "sparse CSR is beta"
            warnings.simplefilter("ignore")
            self.matrix = torch.sparse_csr_tensor(crow, member, torch.ones(len(member)),
                                                  (self.target_size, self.source_size))
        self.pairs = len(member)

    def project(self, logits: torch.Tensor) -> torch.Tensor:
        """Member logits [..., V_member] → log-probs over the primary vocabulary [..., V_primary]."""
        shape = logits.shape[:-1]
        probs = torch.softmax(logits.float().reshape(-1, logits.shape[-1]), dim=-1)[:, :self.source_size]
        compatible = (self.matrix @ probs.t()).t()
        return torch.log_softmax(torch.log(compatible + FLOOR), dim=-1).reshape(*shape, self.target_size)

    def to(self, device) -> "VocabMap":
        self.matrix = self.matrix.to(device)
        return self


def _compatible_pairs(source: list[str | None], target: list[str | None]) -> tuple[list[int], list[int]]:
    """(member id, primary id) pairs whose texts are equal or one is a prefix of the other."""
    target_by_text: dict[str, list[int]] = {}
    for i, text in enumerate(target):
        if text is not None:
            target_by_text.setdefault(text, []).append(i)
    source_by_text: dict[str, list[int]] = {}
    for i, text in enumerate(source):
        if text is not None:
            source_by_text.setdefault(text, []).append(i)
    rows: list[int] = []
    cols: list[int] = []
    for text, ids in source_by_text.items():           # primary tokens that are prefixes of (or equal to) v
        for end in range(1, len(text) + 1):
            hit = target_by_text.get(text[:end])
            if hit:
                for u in hit:
                    rows.extend(ids)
                    cols.extend([u] * len(ids))
    for text, us in target_by_text.items():            # member tokens that are proper prefixes of u
        for end in range(1, len(text)):
            hit = source_by_text.get(text[:end])
            if hit:
                for u in us:
                    rows.extend(hit)
                    cols.extend([u] * len(hit))
    return rows, cols
