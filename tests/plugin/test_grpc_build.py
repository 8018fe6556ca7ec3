"""The gRPC stubs build reproducibly with package-relative imports, at build time only: importing the package
never generates them, and missing stubs are a clear error naming `make proto`."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plugin import grpc_build
from tests.support.serve import ROOT


def test_build_is_reproducible_and_package_relative():
    proc = subprocess.run([sys.executable, "-m", "plugin.grpc_build"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    generated = grpc_build.OUT / "whyslow" / "v1"
    first = {p.name: p.read_bytes() for p in generated.iterdir() if p.is_file()}
    assert "from . import whyslow_pb2" in first["whyslow_pb2_grpc.py"].decode()
    assert "from whyslow.v1" not in first["whyslow_pb2_grpc.py"].decode()
    assert grpc_build.STAMP.read_text().strip() == hashlib.sha256(grpc_build.PROTO.read_bytes()).hexdigest()
    grpc_build.build()
    second = {p.name: p.read_bytes() for p in generated.iterdir() if p.is_file()}
    assert first == second
    assert not list(grpc_build.HERE.glob(".grpc_gen-*"))  # no temporary directory left behind


def _plugin_without_stubs(dest: Path) -> Path:
    """A copy of the plugin package as a fresh clone has it (no grpc_gen)."""
    here = dest / "plugin"
    shutil.copytree(grpc_build.HERE, here, ignore=shutil.ignore_patterns("__pycache__", "grpc_gen", ".grpc_gen-*"))
    return here


def _use_copy(monkeypatch: pytest.MonkeyPatch, here: Path) -> None:
    monkeypatch.setattr(grpc_build, "HERE", here)
    monkeypatch.setattr(grpc_build, "PROTO_ROOT", here / "proto")
    monkeypatch.setattr(grpc_build, "PROTO", here / "proto" / "whyslow" / "v1" / "whyslow.proto")
    monkeypatch.setattr(grpc_build, "OUT", here / "grpc_gen")
    monkeypatch.setattr(grpc_build, "STAMP", here / "grpc_gen" / "PROTO_SHA256")


def test_importing_without_stubs_is_a_clear_error_and_generates_nothing(tmp_path: Path) -> None:
    here = _plugin_without_stubs(tmp_path / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "src"), str(ROOT)]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", "import plugin.grpc_api"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "StubsMissing" in proc.stderr and "run `make proto`" in proc.stderr
    assert str(here / "grpc_gen") in proc.stderr  # the copy was imported, not the repository's stubs
    # `whyslow serve` says it in one line, no traceback
    code = ("import sys; from plugin.cli import main; "
            f"sys.exit(main(['serve', '--data-dir', {str(tmp_path / 'data')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "whyslow serve: error: cannot start: the whyslow.v1 gRPC stubs are not generated" in proc.stderr
    assert "run `make proto`" in proc.stderr
    assert not (here / "grpc_gen").exists()


def test_stale_stubs_warn_and_missing_ones_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    here = _plugin_without_stubs(tmp_path)
    shutil.copytree(grpc_build.OUT, here / "grpc_gen", ignore=shutil.ignore_patterns("__pycache__"))
    _use_copy(monkeypatch, here)
    assert grpc_build.is_fresh()
    grpc_build.require_stubs(strict=True)  # fresh: nothing to say
    (here / "grpc_gen" / "PROTO_SHA256").write_text("0" * 64 + "\n")  # generated from another .proto
    before = sorted(p.relative_to(here) for p in here.rglob("*"))
    with caplog.at_level("WARNING", logger="whyslow.grpc_build"):
        grpc_build.require_stubs()  # used as they are
    assert "not stamped with the current whyslow.proto: run `make proto`" in caplog.text
    with pytest.raises(grpc_build.StubsMissing, match="make proto"):
        grpc_build.require_stubs(strict=True)
    assert sorted(p.relative_to(here) for p in here.rglob("*")) == before  # nothing written
    (here / "grpc_gen" / "whyslow" / "v1" / "whyslow_pb2_grpc.py").unlink()
    with pytest.raises(grpc_build.StubsMissing, match="not generated in .*run `make proto`"):
        grpc_build.require_stubs()


def test_the_build_step_generates_only_when_missing_or_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    here = _plugin_without_stubs(tmp_path)
    _use_copy(monkeypatch, here)
    assert not grpc_build.is_fresh()
    assert grpc_build.generate_if_stale() is True
    assert grpc_build.is_fresh()
    stub = here / "grpc_gen" / "whyslow" / "v1" / "whyslow_pb2.py"
    mtime = stub.stat().st_mtime_ns
    assert grpc_build.generate_if_stale() is False and stub.stat().st_mtime_ns == mtime
    (here / "grpc_gen" / "PROTO_SHA256").write_text("stale\n")
    assert grpc_build.generate_if_stale() is True and grpc_build.is_fresh()
