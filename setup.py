"""Package build step (everything else is in pyproject.toml): the whyslow.v1 gRPC stubs are generated into
plugin/grpc_gen when missing or older than the .proto, before setuptools collects the packages, so every wheel
and install (editable too) ships them; the package itself never generates at import (plugin/grpc_build.py)."""

import importlib.util
from pathlib import Path

from setuptools import setup


def _generate_grpc_stubs() -> None:
    # loaded by path: importing the plugin package would need its runtime dependencies in the build environment
    spec = importlib.util.spec_from_file_location("_whyslow_grpc_build",
                                                  Path(__file__).resolve().parent / "plugin" / "grpc_build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.generate_if_stale()


_generate_grpc_stubs()
setup()
