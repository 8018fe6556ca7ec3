"""Shared helpers of the accuracy benchmarks: ranking metrics, result files, the accuracy floor."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "datasets"
FLOOR_FILE = RESULTS / "accuracy_floor.json"


def dataset_path(name: str) -> Path:
    """``../shared/datasets/<name>``; raises FileNotFoundError with a clear message when absent."""
    path = SHARED / name
    if not path.is_dir():
        raise FileNotFoundError(f"dataset {name!r} not found at {path}")
    return path


def rank_of(ranking: Sequence[str], truth: str) -> int | None:
    """1-based rank of ``truth`` in ``ranking`` (None when absent)."""
    for i, name in enumerate(ranking):
        if name == truth:
            return i + 1
    return None


def in_top_k(ranking: Sequence[str], truth: str, k: int) -> bool:
    r = rank_of(ranking, truth)
    return r is not None and r <= k


def rank_by_score(scores: dict[str, float]) -> list[str]:
    """Names sorted by score, largest first; ties broken by name so runs are reproducible."""
    return [n for n, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


@dataclass
class TopK:
    """Counts of cases whose truth is in the top-k of the method's ranking."""

    ks: tuple[int, ...] = (1, 3)
    n: int = 0
    hits: dict[int, int] = field(default_factory=dict)
    empty: int = 0

    def add(self, ranking: Sequence[str], truth: str) -> None:
        self.n += 1
        if not ranking:
            self.empty += 1
        for k in self.ks:
            self.hits[k] = self.hits.get(k, 0) + int(in_top_k(ranking, truth, k))

    def recall(self, k: int) -> float:
        return self.hits.get(k, 0) / self.n if self.n else float("nan")

    def cell(self, k: int, as_count: bool = False) -> str:
        if not self.n:
            return "n/a"
        if as_count:
            return f"{self.hits.get(k, 0)}/{self.n}"
        return f"{self.recall(k):.3f}"


def machine() -> str:
    """One line describing where the benchmark ran."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def command_line(module: str, argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([".venv/bin/python", "-m", module, *map(shlex.quote, args)])


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines)


def write_result(name: str, title: str, command: str, body: str) -> Path:
    """Write ``benchmarks/results/<name>.md`` with the title, the exact command, the machine and the body."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.md"
    text = f"## {title}\n\nCommand: `{command}`  \nMachine: {machine()}\n\n{body.strip()}\n"
    path.write_text(text)
    return path


def read_floor() -> dict[str, dict[str, float]]:
    if FLOOR_FILE.exists():
        return json.loads(FLOOR_FILE.read_text())
    return {}


def update_floor(section: str, figures: dict[str, float]) -> None:
    """Record the figures a benchmark reached (the regression floor of benchmarks/tests reads them)."""
    floor = read_floor()
    floor[section] = {k: round(float(v), 4) for k, v in sorted(figures.items())}
    RESULTS.mkdir(parents=True, exist_ok=True)
    FLOOR_FILE.write_text(json.dumps(floor, indent=2, sort_keys=True) + "\n")
