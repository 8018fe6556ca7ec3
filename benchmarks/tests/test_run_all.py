"""run_all finds every benchmark module with a main and assembles the README from the result files."""

from __future__ import annotations

from benchmarks import run_all
from benchmarks.common import RESULTS


def test_run_all_lists_benchmarks_and_assembles_readme(tmp_path, monkeypatch):
    names = run_all.benchmark_modules()
    assert {"petshop", "nezha_trainticket", "synthetic"} <= set(names)
    assert not {"common", "baselines", "petshop_data", "nezha_data", "synthetic_data", "run_all"} & set(names)
    monkeypatch.setattr(run_all, "HERE", tmp_path)  # write the README into a temporary folder
    out = run_all.assemble({"broken_bench": "exit status 2"})
    text = out.read_text()
    assert text.startswith("# whyslow benchmarks")
    for path in sorted(RESULTS.glob("*.md")):
        assert path.read_text().strip().splitlines()[0] in text
    assert "`broken_bench`: exit status 2" in text
