"""The gRPC stubs build reproducibly with package-relative imports."""

from __future__ import annotations

import hashlib
import subprocess
import sys

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
