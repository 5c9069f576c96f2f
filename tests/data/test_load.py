import json

import datasets
import pytest
from helpers import make_row, write_jsonl

from blendkit.data import DataError, PoolError, load_mixinstruct


def _rows(n=3):
    return [make_row(f"r{k}", [0.2, 0.5, 0.9]) for k in range(n)]


def test_loads_jsonl_gz_and_json_array(tmp_path):
    rows = _rows()
    gz = write_jsonl(tmp_path / "a.jsonl.gz", rows, gz=True)
    array = tmp_path / "a.json"
    array.write_text(json.dumps(rows, indent=2))
    for path in (gz, str(array)):
        result = load_mixinstruct(path, required_scores=["judge"])
        assert isinstance(result.dataset, datasets.Dataset)
        assert result.dataset["id"] == ["r0", "r1", "r2"]
        assert [c["scores"]["judge"] for c in result.dataset[1]["candidates"]] == [0.2, 0.5, 0.9]
        assert not result.skipped


def test_loads_saved_dataset_directory(tmp_path):
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(_rows(2)).save_to_disk(str(saved))
    result = load_mixinstruct(str(saved))
    assert result.dataset["id"] == ["r0", "r1"]


def test_embedded_sample_is_valid_and_has_pool():
    from helpers import ROOT

    result = load_mixinstruct(ROOT / "data/samples/val.jsonl.gz", pool=str(ROOT / "data/samples/pool12.txt"),
                              required_scores=["judge"])
    assert len(result) == 40
    assert all(len(c) >= 11 for c in result.dataset["candidates"])


@pytest.mark.parametrize("line, field, words", [
    ('{"id": "x", "instruction": "q", "candidates": [', None, "malformed JSON"),
    ('{"instruction": "q", "candidates": []}', "id", "missing"),
    ('{"id": "x", "instruction": 3, "candidates": []}', "instruction", "expected a string"),
    ('{"id": "x", "instruction": "q", "candidates": []}', "candidates", "0 candidate"),
    ('{"id": "x", "instruction": "q", "candidates": "abc"}', "candidates", "expected a list"),
    ('{"id": "x", "instruction": "q", "candidates": [{"model": "a", "text": "t", "scores": {"judge": 1}}]}',
     "candidates", "1 candidate"),
    ('{"id": "x", "instruction": "q", "candidates": [{"model": "a", "text": 5}, {"model": "b", "text": "t"}]}',
     "candidates[0].text", "expected a string"),
    ('{"id": "x", "instruction": "q", "candidates": [{"model": "a", "text": "t", "scores": {"judge": "high"}},'
     ' {"model": "b", "text": "t"}]}', "candidates[0].scores.judge", "finite number"),
    ('[1, 2]', None, "JSON object"),
])
def test_bad_rows_name_file_line_and_field(tmp_path, line, field, words):
    good = json.dumps(make_row("good", [0.1, 0.9]))
    path = write_jsonl(tmp_path / "bad.jsonl", [good, line])
    with pytest.raises(DataError) as info:
        load_mixinstruct(path)
    err = info.value
    assert err.source == path and err.location == "line 2" and err.field == field
    assert words in str(err) and "bad.jsonl, line 2" in str(err)


def test_skip_mode_keeps_every_valid_row_and_reports_each_skip(tmp_path):
    good = [json.dumps(make_row(f"g{k}", [0.1, 0.9])) for k in range(3)]
    lines = [good[0], "{not json", good[1], '{"id": "g0", "instruction": "q", "candidates": []}', good[2],
             json.dumps(make_row("g0", [0.3, 0.4]))]
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)
    result = load_mixinstruct(path, on_error="skip")
    assert result.dataset["id"] == ["g0", "g1", "g2"]
    assert [(s.location, s.field) for s in result.skipped] == [("line 2", None), ("line 4", "candidates"),
                                                                ("line 6", "id")]
    assert "duplicate id 'g0'" in result.skipped[2].reason
    assert "3 rows loaded, 3 skipped" in result.summary()


def test_duplicate_ids_raise_with_both_lines(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [make_row("a", [0, 1]), make_row("a", [1, 0])])
    with pytest.raises(DataError, match=r"line 2, field 'id': duplicate id 'a' \(first seen at line 1\)"):
        load_mixinstruct(path)


def test_non_utf8_bytes_name_line_and_column(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(make_row("a", [0, 1])).encode() + b"\n" + '{"id": "caf\xe9"}'.encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=r"latin1.jsonl, line 2: not valid UTF-8 \(byte 0xe9 at column 12\)"):
        load_mixinstruct(str(path))


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="empty.jsonl: the file is empty"):
        load_mixinstruct(str(empty))
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        load_mixinstruct(str(tmp_path / "nope.jsonl"))


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["{", "{"])
    with pytest.raises(DataError, match="no valid rows \\(2 skipped; first: line 1"):
        load_mixinstruct(path, on_error="skip")


def test_pool_filters_candidates_and_rejects_unknown_names(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", _rows())
    result = load_mixinstruct(path, pool=["m0", "m2"])
    assert [c["model"] for c in result.dataset[0]["candidates"]] == ["m0", "m2"]
    pool_file = tmp_path / "pool.txt"
    pool_file.write_text("m1\n# comment\nm2\n")
    assert [c["model"] for c in load_mixinstruct(path, pool=str(pool_file)).dataset[0]["candidates"]] == ["m1", "m2"]
    with pytest.raises(DataError, match=r"pool models never seen in this data: \['vicuna'\]"):
        load_mixinstruct(path, pool=["m0", "m1", "vicuna"])
    with pytest.raises(DataError, match="1 candidate\\(s\\) in the pool"):
        load_mixinstruct(path, pool=["m0"])


def test_a_pool_that_misses_the_data_names_the_pool_and_both_model_lists(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", _rows())
    pool_file = tmp_path / "pool.txt"
    pool_file.write_text("vicuna\nalpaca\n")
    with pytest.raises(PoolError) as error:
        load_mixinstruct(path, pool=str(pool_file))
    message = str(error.value)
    assert f"has 0 candidate(s) in the pool {pool_file};" in message
    assert "The row's models: m0, m1, m2" in message and "the pool's: alpaca, vicuna" in message
    assert error.value.pool == str(pool_file)
    with pytest.raises(PoolError, match=r"in the pool \[m0\]; at least 2"):
        load_mixinstruct(path, pool=["m0"])


def test_required_score_key_missing_names_candidate(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", _rows())
    with pytest.raises(DataError, match=r"field 'candidates\[0\].scores.rouge': missing; the score key 'rouge'"):
        load_mixinstruct(path, required_scores=["rouge"])


def test_json_array_rows_are_located_by_index_and_line(tmp_path):
    rows = _rows(2)
    rows[1]["candidates"][1]["model"] = None
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, indent=1))
    with pytest.raises(DataError) as info:
        load_mixinstruct(str(path))
    assert info.value.location.startswith("row 1 (line ") and info.value.field == "candidates[1].model"


def test_non_utf8_line_can_be_skipped(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(make_row("a", [0, 1])).encode() + b"\n" + '{"id": "caf\xe9"}'.encode("latin-1") + b"\n"
                     + json.dumps(make_row("b", [0, 1])).encode() + b"\n")
    result = load_mixinstruct(str(path), on_error="skip")
    assert result.dataset["id"] == ["a", "b"]
    assert result.skipped[0].location == "line 2" and "not valid UTF-8" in result.skipped[0].reason


def test_saved_dataset_round_trip_with_uneven_score_keys(tmp_path):
    rows = _rows(2)
    del rows[0]["candidates"][0]["scores"]["bleu"]  # Arrow will fill it with null when saved
    first = load_mixinstruct(write_jsonl(tmp_path / "rows.jsonl", rows))
    first.dataset.save_to_disk(str(tmp_path / "saved"))
    again = load_mixinstruct(str(tmp_path / "saved"), required_scores=["judge"])
    assert again.dataset["id"] == ["r0", "r1"]
    with pytest.raises(DataError, match=r"row 0, field 'candidates\[0\].scores.bleu': missing"):
        load_mixinstruct(str(tmp_path / "saved"), required_scores=["bleu"])


def test_byte_order_mark_and_corrupt_gzip(tmp_path):
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(make_row("a", [0, 1])).encode() + b"\n")
    assert load_mixinstruct(str(bom)).dataset["id"] == ["a"]
    corrupt = tmp_path / "corrupt.jsonl.gz"
    write_jsonl(corrupt, _rows(50), gz=True)
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    with pytest.raises(DataError, match="corrupt.jsonl.gz: cannot read the file"):
        load_mixinstruct(str(corrupt))
    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_text("hello")
    with pytest.raises(DataError, match="plain.jsonl.gz: cannot read the file"):
        load_mixinstruct(str(not_gzip))


def test_offline_hub_id_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="some-user/some-dataset: cannot load it with `datasets`"):
        load_mixinstruct("some-user/some-dataset")
