"""The package build generates the gRPC stubs (a fresh clone has none) and the wheel ships them with their
freshness stamp, so an installed copy imports plugin.grpc_api from a read-only site-packages without writing
anything."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from plugin import grpc_build
from tests.support.serve import ROOT

SOURCES = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "plugin", "rca_engine", "collector_processor")


def _copy_sources(dest: Path) -> None:
    """A private copy of what the wheel is built from, as a fresh clone has it (no generated stubs): building in
    the shared tree would write build/ and *.egg-info next to other people's work."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".grpc_gen-*", ".PROTO_SHA256.*", "grpc_gen")
    dest.mkdir(parents=True)
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, dest / name)


def _make_writable(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_the_build_generates_the_stubs_and_the_wheel_imports_read_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _copy_sources(src)
    assert not (src / "plugin" / "grpc_gen").exists()
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    proc = subprocess.run([*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = wheels.glob("whyslow-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        stamp = zf.read("plugin/grpc_gen/PROTO_SHA256").decode().strip()
    for name in ("plugin/grpc_gen/__init__.py", "plugin/grpc_gen/whyslow/v1/whyslow_pb2.py",
                 "plugin/grpc_gen/whyslow/v1/whyslow_pb2_grpc.py", "plugin/proto/whyslow/v1/whyslow.proto"):
        assert name in names, f"{name} missing from {wheel.name}"
    assert stamp == grpc_build._digest()

    target = tmp_path / "site"
    proc = subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    for p in [target, *target.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        env = {**os.environ, "PYTHONPATH": str(target), "PYTHONDONTWRITEBYTECODE": "1"}
        code = ("import plugin, plugin.grpc_api as g, plugin.grpc_build as b; "
                "print(plugin.__file__); print(b.is_fresh()); print(g.SERVICE_NAME)")
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr[-3000:]
        module_file, fresh, service = proc.stdout.split()
        assert Path(module_file).is_relative_to(target)  # the installed copy, not the repository
        assert fresh == "True"
        assert service == "whyslow.v1.WhySlow"
        assert "regenerat" not in proc.stderr and "not stamped" not in proc.stderr
        after = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
        assert after == before  # nothing written
    finally:
        _make_writable(target)


def test_cli_version_matches_the_service(capsys: pytest.CaptureFixture[str]) -> None:
    """`whyslow --version` (was: 'unrecognized arguments') prints the version /api/v1/status reports."""
    from plugin.cli import main
    from plugin.service import VERSION

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"whyslow {VERSION}"
