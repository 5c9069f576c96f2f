"""The fast training paths: length-grouped batches, fused AdamW, and the CPU precision an unset recipe gets."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from helpers import ROOT, make_row, write_jsonl

from blendkit.data import load_mixinstruct
from blendkit.pairranker.datamodule import PairRankerDataModule, length_grouped_order
from blendkit.training import cli as cli_module
from blendkit.training.optim import adamw_kernel, adamw_with_warmup

RECIPE = str(ROOT / "configs" / "pairranker" / "minilm_cpu.yaml")


# -- length_grouped_order ---------------------------------------------------------------------------------- #
def _lengths(n: int, seed: int = 0) -> list[int]:
    return torch.randint(10, 250, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def _runs(order: list[int], size: int) -> list[list[int]]:
    return [order[k:k + size] for k in range(0, len(order), size)]


def test_every_item_comes_once_and_the_short_run_comes_last():
    order = length_grouped_order(_lengths(1000), batch_size=16, seed=3, batches_per_group=8)
    assert sorted(order) == list(range(1000))
    assert [len(run) for run in _runs(order, 16)] == [16] * 62 + [1000 - 62 * 16]


def test_the_order_repeats_for_a_seed_and_changes_with_it():
    first = length_grouped_order(_lengths(500), 8, seed=7)
    assert length_grouped_order(_lengths(500), 8, seed=7) == first     # a resumed epoch: the same batches
    assert length_grouped_order(_lengths(500), 8, seed=8) != first


def test_grouping_cuts_padding_and_keeps_batch_order_random():
    lengths = _lengths(2048)
    grouped = _runs(length_grouped_order(lengths, batch_size=16, seed=0), 16)
    shuffled = torch.randperm(2048, generator=torch.Generator().manual_seed(0)).view(-1, 16).tolist()

    def padded(batches):
        return sum(len(b) * max(lengths[k] for k in b) for b in batches)

    assert padded(grouped) < 0.8 * padded(shuffled)            # uniform 10..250: ~40% of random batches is padding
    widths = [max(lengths[k] for k in b) for b in grouped]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)   # batches are not served by length


def test_a_bad_batch_size_is_refused():
    with pytest.raises(ValueError, match="data.batch_size"):
        length_grouped_order([3, 4], batch_size=0, seed=0)


# -- PairRankerDataModule -------------------------------------------------------------------------------- #
@pytest.fixture
def prepared(tiny_backbone, tmp_path):
    """(factory of data modules over the same tokenized rows, the rows)."""
    from blendkit.pairranker.module import PairRankerModule

    rows = [make_row(f"r{k}", [((k * 7 + j * 3) % 10) / 10 for j in range(6)]) for k in range(20)]
    module = PairRankerModule(backbone=tiny_backbone, source_max_length=16, candidate_max_length=24,
                              head_hidden_size=16)
    trainer = SimpleNamespace(lightning_module=module, current_epoch=0)

    def data_module(**options):
        data = PairRankerDataModule(pairs_per_row=6, batch_size=8, seed=5, **options)
        data.trainer = trainer
        return data

    tokenized = data_module().prepare(load_mixinstruct(write_jsonl(tmp_path / "train.jsonl", rows)))
    return data_module, tokenized, trainer


def _epoch(data_module, rows, **options):
    data = data_module(**options)
    data.train_data = rows
    return list(data.train_dataloader())


def test_length_batches_hold_the_epochs_pairs_with_less_padding(prepared):
    data_module, rows, _ = prepared
    by_length, by_random = _epoch(data_module, rows), _epoch(data_module, rows, batch_order="random")
    assert len(by_length) == len(by_random) == math.ceil(20 * 6 / 8)

    def pairs(batches):   # a pair's identity within its row: its token ids and label
        return sorted((tuple(ids[mask.bool()].tolist()), float(label)) for b in batches
                      for ids, mask, label in zip(b["input_ids"], b["attention_mask"], b["labels"]))

    assert pairs(by_length) == pairs(by_random)
    padding = {name: sum(int((1 - b["attention_mask"]).sum()) for b in batches)
               for name, batches in (("length", by_length), ("random", by_random))}
    assert padding["length"] < padding["random"], padding


def test_an_epochs_batches_are_reproducible_and_differ_between_epochs(prepared):
    data_module, rows, trainer = prepared
    first = _epoch(data_module, rows)
    again = _epoch(data_module, rows)              # a resumed run rebuilds the loader of the same epoch
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(first, again))
    trainer.current_epoch = 1
    second = _epoch(data_module, rows)
    assert any(a["input_ids"].shape != b["input_ids"].shape or not torch.equal(a["input_ids"], b["input_ids"])
               for a, b in zip(first, second))


def test_under_ddp_the_runs_of_similar_length_span_every_devices_batch(prepared):
    """Lightning deals a sequential DistributedSampler's items round-robin: with 2 devices of 8 pairs, the pairs
    of one step are a run of 16 in the loader's order, so runs of 16 (not 8) must be of similar length."""
    data_module, rows, trainer = prepared

    def runs_sorted(devices: int) -> list[bool]:
        trainer.world_size = devices
        data = data_module()
        data.train_data = rows
        lengths = data.pair_lengths(data.train_dataloader().dataset)
        return [run == sorted(run, reverse=True) for run in _runs(lengths, 16)]   # runs are cut from sorted groups

    assert all(runs_sorted(2))
    assert not all(runs_sorted(1))   # one device: runs of 8 are sorted, runs of 16 straddle two of them


def test_overfitting_takes_plain_batches(prepared):
    """overfit_batches trains on the first batches only: they must not be runs of one length."""
    data_module, rows, trainer = prepared
    trainer.overfit_batches = 2
    data = data_module()
    data.train_data = rows
    assert data.train_dataloader().batch_sampler.batch_size == 8
    assert isinstance(data.train_dataloader().sampler, torch.utils.data.RandomSampler)   # as batch_order: random


def test_a_bad_batch_order_names_the_option():
    with pytest.raises(ValueError, match=r"data.batch_order must be one of \('length', 'random'\), got 'sorted'"):
        PairRankerDataModule(batch_order="sorted")


# -- AdamW ------------------------------------------------------------------------------------------------ #
def test_cpu_parameters_get_the_fused_kernel_and_others_the_default():
    assert adamw_kernel([torch.zeros(3, requires_grad=True)]) == {"fused": True}
    assert adamw_kernel([torch.zeros(3, device="meta")]) == {}
    assert adamw_kernel([]) == {}
    param = torch.nn.Parameter(torch.zeros(2, 2))
    assert adamw_with_warmup([{"params": [("w", param)], "lr": 1e-3}], 0.01, 0.1, 10)["optimizer"].defaults["fused"]
    assert not adamw_with_warmup([{"params": [("w", param)], "lr": 1e-3}], 0.01, 0.1, 10,
                                 fused=False)["optimizer"].defaults["fused"]


def test_the_fused_step_matches_the_default_step():
    torch.manual_seed(0)
    start = {"w": torch.randn(8, 4), "b": torch.randn(4)}
    grads = [{name: torch.randn_like(value) for name, value in start.items()} for _ in range(5)]
    final = {}
    for fused in (True, False):
        params = {name: torch.nn.Parameter(value.clone()) for name, value in start.items()}
        opt = adamw_with_warmup([{"params": list(params.items()), "lr": 1e-2}], 0.1, 0.2, 5, fused=fused)
        optimizer, scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
        for step in grads:
            for name, param in params.items():
                param.grad = step[name].clone()
            optimizer.step()
            scheduler.step()
        final[fused] = params
    for name in start:
        assert not torch.equal(final[True][name], start[name])         # it moved
        torch.testing.assert_close(final[True][name], final[False][name], rtol=1e-6, atol=1e-6)


# -- precision ---------------------------------------------------------------------------------------------- #
@pytest.mark.parametrize("fast, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_an_unset_precision_on_cpu_follows_the_cpus_bf16(monkeypatch, fast, expected):
    monkeypatch.setattr(cli_module, "fast_bf16", lambda device: fast)
    assert cli_module.default_precision("cpu") == expected
    assert cli_module.default_precision("gpu") is None   # other accelerators keep Lightning's default


@pytest.mark.parametrize("extra, expected", [([], "bf16-mixed"), (["--trainer.precision", "32-true"], "32-true")])
def test_the_cli_resolves_an_unset_precision_and_keeps_a_set_one(tiny_backbone, tmp_path, monkeypatch, extra,
                                                                  expected):
    monkeypatch.setattr(cli_module, "fast_bf16", lambda device: True)
    train = write_jsonl(tmp_path / "train.jsonl", [make_row("r0", [0.1, 0.9])])
    run = cli_module.train_cli(["--config", RECIPE, "--model.backbone", tiny_backbone, "--model.freeze_layers",
                                "0", "--data.train_file", train, "--data.val_file", "null",
                                "--trainer.default_root_dir", str(tmp_path), "--trainer.precision", "null", *extra],
                               run=False)
    assert run.trainer.precision == expected


def test_bf16_autocast_training_follows_the_fp32_loss(tiny_backbone):
    """The same batches in fp32 and under CPU bf16 autocast (Lightning's bf16-mixed): the losses agree closely."""
    from blendkit.pairranker import PairRankerModel
    from blendkit.pairranker.encoding import PairEncoder

    losses = {}
    for precision in ("32-true", "bf16-mixed"):
        torch.manual_seed(0)
        model, tokenizer = PairRankerModel.from_backbone(tiny_backbone, source_max_length=16,
                                                         candidate_max_length=24, head_hidden_size=16)
        encoder = PairEncoder(tokenizer, model.config)
        rows = encoder.encode_rows(["Say something."] * 4,
                                   [["short", "a much longer answer " * k, "mid answer"] for k in range(1, 5)])
        opt = adamw_with_warmup([{"params": list(model.named_parameters()), "lr": 3e-3}], 0.0, 0.0, 30)
        batch = encoder.collate([encoder.pair(row, i, j) for row in rows for i, j in ((1, 0), (0, 1))],
                                labels=[1.0, 0.0] * 4)
        losses[precision] = []
        for _ in range(30):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
                loss = model(**batch).loss
            loss.backward()
            opt["optimizer"].step()
            opt["optimizer"].zero_grad()
            losses[precision].append(loss.item())
    fp32, bf16 = losses["32-true"], losses["bf16-mixed"]
    assert fp32[-1] < 0.5 * fp32[0]                                   # it learned
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < 0.01, (fp32, bf16)
