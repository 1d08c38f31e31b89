"""A short run of scripts/fuzz_gguf.py (the full one is scripts/fuzz.sh): the same mutated and
random inputs through Python's GGUFFile and, in one Node process, the streaming readGGUF built from
web/src by esbuild. Every input must be accepted or rejected with a ModelFormatError naming it (no
other exception, no timeout), and the Node process's memory must stay flat over the run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import fuzz_gguf  # noqa: E402

N = 2500


def _quiet(*args, **kwargs) -> None:
    pass


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[fuzz_gguf.Seed]:
    folder = tmp_path_factory.mktemp("fuzz-seeds")
    fuzz_gguf.make_seeds(folder, tiny=(("llama", 4), ("gemma3", 8)))
    # the whole real headers (1-2 s each in Python) are left to scripts/fuzz.sh; their cut copies stay
    return [s for s in fuzz_gguf.load_seeds(folder) if "full-header" not in s.name]


def _check(tally: fuzz_gguf.Tally) -> dict:
    report = tally.report(len(tally.codes))
    assert report["inputs"] == N
    assert report["outcomes"]["crash"] == 0 and report["outcomes"]["timeout"] == 0, report["failures"]
    # the inputs reach every stage: some parse whole, others fail in the header, the config, the data
    assert report["outcomes"]["accepted"] > N // 50, report
    assert report["rejected_by_stage"].get("rejected:header", 0) > N // 2, report
    assert report["rejected_by_stage"].get("rejected:config", 0) > 0, report
    return report


def test_python_reader_survives_fuzzing(seeds):
    start = fuzz_gguf._rss()
    tally = fuzz_gguf.run_python(seeds, list(range(N)), 0, 10.0, _quiet)
    report = _check(tally)
    # memory taken by the run itself: the RSS sampled every 100 inputs against the RSS before it (the
    # report's peak is the process's lifetime maximum, which in a pytest run includes the earlier
    # tests' models; scripts/fuzz.sh runs the fuzzer alone and reports it)
    during = max(b for _, b in tally.rss[:-1])
    assert (during - start) / fuzz_gguf.MiB < 256, (start, tally.rss)


def test_node_streaming_reader_survives_fuzzing_with_flat_memory(seeds, tmp_path):
    entry = fuzz_gguf.build_node_driver(tmp_path)
    report = _check(fuzz_gguf.run_node(seeds, list(range(N)), 0, 10.0, entry, 2048 * fuzz_gguf.MiB, _quiet))
    assert report["rejected_by_stage"].get("rejected:data", 0) > 0, report  # truncated tensor bytes, found while streaming
    # flat: the second half's peak within 64 MiB of the first tenth's (a forged block_count once grew it by ~14 MiB/s)
    assert report["rss_growth_mib"] < 64 and report["peak_rss_mib"] < 512, report
