"""Smoke test of ``dpxattn bench --quick --sections streaming`` (the exact streaming build's rows
ST1-ST6): the section runs, prints and writes every row, cleans up its temporary ``.npy``
files, and its deterministic rows (bit-identity on Dask, the sensitivity's independence of n)
hold. No assertion here is about speed."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import tempfile

import pytest

from dpxattn.benchmarks import measure_streaming as ms
from dpxattn.benchmarks.targets import VERDICTS
from dpxattn.cli import main

ROW = re.compile(r"^\| (?P<id>ST[0-9][A-Za-z]*) +\|.*\| (?P<verdict>PASS|FAIL|UNSURE|INFO|SKIP) +\|")
STREAMING_IDS = {"ST1", "ST2", "ST3m", "ST3a", "ST3t", "ST3o", "ST4", "ST4e", "ST5", "ST5g", "ST5s",
                 "ST6", "ST6s", "ST6g"}
STREAM_ROWS, DASK_ROWS = 5_000, 3_000
HAVE_DASK = all(importlib.util.find_spec(m) is not None for m in ("dask", "distributed"))


@pytest.fixture(scope="module")
def streaming_run(tmp_path_factory):
    """(exit status, stdout, JSON document, the temporary directory the section used)."""
    scratch = tmp_path_factory.mktemp("stream-scratch")
    out = tmp_path_factory.mktemp("stream") / "bench.json"
    saved = tempfile.tempdir
    tempfile.tempdir = str(scratch)  # the section's .npy files go here (and must be removed)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            status = main(["bench", "--quick", "--sections", "streaming", "--stream-rows",
                           str(STREAM_ROWS), "--dask-rows", str(DASK_ROWS), "--out", str(out)])
    finally:
        tempfile.tempdir = saved
    return status, buf.getvalue(), json.loads(out.read_text()), scratch


def test_streaming_section_prints_every_row(streaming_run):
    status, text, _, _ = streaming_run
    assert status == 0, text[-3000:]
    assert "ERROR in section" not in text
    assert "## Streaming (exact accumulator" in text
    rows = [m for m in map(ROW.match, text.splitlines()) if m]
    assert {m["id"] for m in rows} == STREAMING_IDS
    assert all(m["verdict"] in VERDICTS for m in rows)


def test_streaming_json_rows_and_sizes(streaming_run):
    _, _, doc, _ = streaming_run
    by_id = {row["id"]: row for row in doc["targets"]}
    assert set(by_id) == STREAMING_IDS
    sizes = doc["streaming"]["sizes"]
    assert sizes["stream_rows"] == STREAM_ROWS and sizes["dask_rows"] == DASK_ROWS
    assert doc["streaming"]["memmap"]["n"] == STREAM_ROWS
    # quick mode: 3 repetitions, so every interval row is UNSURE
    for rid in ("ST1", "ST2", "ST3t", "ST6"):
        assert by_id[rid]["basis"] == "interval" and by_id[rid]["verdict"] == "UNSURE", by_id[rid]
    assert by_id["ST2"]["op"] == "in" and by_id["ST2"]["threshold"] == [0.9, 1.1]
    assert by_id["ST3m"]["basis"] == "deterministic" and by_id["ST3m"]["measured"] >= 0
    assert by_id["ST3m"]["threshold"] > 2.0  # 2 GiB plus one chunk
    assert by_id["ST3a"]["verdict"] in ("INFO", "SKIP")
    assert by_id["ST3o"]["verdict"] == "INFO" and by_id["ST3o"]["basis"] == "interval"


def test_sensitivity_rows_are_exact_and_do_not_grow_with_n(streaming_run):
    _, _, doc, _ = streaming_run
    by_id = {row["id"]: row for row in doc["targets"]}
    for rid in ("ST5", "ST5g", "ST6s", "ST6g"):
        assert by_id[rid]["basis"] == "deterministic" and by_id[rid]["verdict"] == "PASS", by_id[rid]
        assert 1.0 <= by_id[rid]["measured"] <= 1.0001
    assert by_id["ST5s"]["verdict"] == "INFO" and by_id["ST5s"]["measured"] > 100


def test_dask_rows_are_bit_identical_or_skipped(streaming_run):
    _, _, doc, _ = streaming_run
    by_id = {row["id"]: row for row in doc["targets"]}
    if not HAVE_DASK:
        assert by_id["ST4"]["verdict"] == by_id["ST4e"]["verdict"] == "SKIP"
        assert "distributed" in by_id["ST4e"]["note"]
        return
    assert by_id["ST4e"]["verdict"] == "PASS", by_id["ST4e"]
    assert doc["streaming"]["dask"]["identical"] == {"float": True, "secure": True}
    assert by_id["ST4"]["basis"] == "interval"


def test_temporary_npy_files_are_removed(streaming_run):
    *_, scratch = streaming_run
    assert list(scratch.iterdir()) == []


def test_rows_are_fitted_to_the_free_disk(monkeypatch, tmp_path):
    class Usage:
        free = ms.DISK_RESERVE_BYTES + 96 * 1_500_000  # room for 1.5e6 rows of 96 bytes

    monkeypatch.setattr(ms.shutil, "disk_usage", lambda path: Usage)
    n, note = ms._fit_rows_on_disk(str(tmp_path), 10_000_000, 96)
    assert n == 1_000_000 and "instead of 10000000" in note
    assert ms._fit_rows_on_disk(str(tmp_path), 1_000, 96) == (1_000, "")


def test_sizes_follow_the_options():
    full = ms.StreamingSizes(quick=False)
    assert full.stream_rows == ms.STREAM_ROWS and full.dask_rows == ms.DASK_ROWS
    assert full.slope_rows[-1] >= 250_000
    assert all(b == 2 * a for a, b in zip(full.slope_rows, full.slope_rows[1:]))
    small = ms.StreamingSizes(quick=False, stream_rows=1_000, dask_rows=500)
    assert (small.stream_rows, small.in_memory_rows, small.dask_rows) == (1_000, 1_000, 500)
    with pytest.raises(ValueError, match="--stream-rows"):
        ms.StreamingSizes(quick=True, stream_rows=0)
