"""Configuration: precedence flag > env > file > default, validation with one-line errors (exit 2)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from plugin.config import ConfigError, ServeConfig, build_config
from tests.support.serve import ROOT


def test_defaults_bind_loopback():
    cfg = build_config({}, env={})
    assert cfg == ServeConfig().validate()
    for name in ("otlp_grpc", "otlp_http", "http", "grpc"):
        assert getattr(cfg, name).startswith("127.0.0.1:")
    assert (cfg.otlp_grpc, cfg.otlp_http, cfg.http, cfg.grpc) == (
        "127.0.0.1:4317", "127.0.0.1:4318", "127.0.0.1:8080", "127.0.0.1:50051")
    assert cfg.cors_origins == [] and cfg.auth_token is None and cfg.data_dir == "./whyslow-data"


def test_precedence(tmp_path):
    path = tmp_path / "whyslow.yaml"
    path.write_text("threshold: 7\nmin-traces: 300\nwindow: 4000\nhttp: 127.0.0.1:9000\n"
                    "cors_origins: [http://localhost:3000]\n")
    env = {"WHYSLOW_MIN_TRACES": "200", "WHYSLOW_HTTP": "127.0.0.1:9100", "WHYSLOW_CONFIG": str(path)}
    cfg = build_config({"http": "127.0.0.1:9200"}, env=env)
    assert cfg.http == "127.0.0.1:9200"          # flag beats env and file
    assert cfg.min_traces == 200                 # env beats file
    assert cfg.threshold == 7.0 and cfg.window == 4000  # file beats default
    assert cfg.cors_origins == ["http://localhost:3000"]
    assert cfg.refit_interval_s == 300.0         # default
    assert build_config({"early_refit": "false"}, env={"WHYSLOW_EARLY_REFIT": "true"}).early_refit is False
    assert build_config({}, env={"WHYSLOW_EARLY_REFIT": "no"}).early_refit is False
    cfg = build_config({"config": str(path), "cors_origins": "http://a.example, http://b.example:8000"}, env={})
    assert cfg.cors_origins == ["http://a.example", "http://b.example:8000"]


def test_token_file(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cr3t-value\n")
    cfg = build_config({"auth_token_file": str(token)}, env={})
    assert cfg.auth_token == "s3cr3t-value"
    assert "s3cr3t" not in repr(cfg)
    with pytest.raises(ConfigError, match="not both"):
        build_config({"auth_token_file": str(token)}, env={"WHYSLOW_AUTH_TOKEN": "x"})


@pytest.mark.parametrize("flags, env, message", [
    ({"http": "localhost"}, {}, "http must be host:port"),
    ({"grpc": "127.0.0.1:70000"}, {}, "port must be 0..65535"),
    ({"min_traces": "abc"}, {}, "min_traces (flag --min-traces): cannot parse"),
    ({}, {"WHYSLOW_THRESHOLD": "-1"}, "threshold must be a finite number > 0"),
    # inf used to start (status JSON then carried Infinity, which is not JSON; traces never completed)
    ({"threshold": "inf"}, {}, "threshold must be a finite number > 0, got inf"),
    ({"trace_timeout_s": "inf"}, {}, "trace_timeout_s must be a finite number > 0"),
    ({"min_traces": "500", "window": "100"}, {}, "window (100) must be >= min_traces (500)"),
    ({"grafana_url": "ftp://x"}, {}, "grafana_url must be an http(s) URL"),
    ({"log_level": "loud"}, {}, "log_level must be one of"),
    ({"intervals": "1"}, {}, "intervals must be 0 or between 2 and 200"),
    ({"early_refit": "maybe"}, {}, "early_refit (flag --early-refit): expected true or false"),
    ({"cors_origins": "not an origin"}, {}, "cors_origins entries"),
    ({"auth_token_file": "/nonexistent/token"}, {}, "cannot read auth_token_file"),
    ({"config": "/nonexistent.yaml"}, {}, "cannot read config file"),
])
def test_invalid(flags, env, message):
    with pytest.raises(ConfigError) as err:
        build_config(flags, env=env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("threshold: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config({"config": str(path)}, env={})
    path.write_text("nonsense_key: 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'nonsense_key'"):
        build_config({"config": str(path)}, env={})


def test_cli_reports_config_errors_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "plugin.cli", "serve", "--http", "nope", "--data-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "whyslow serve: error: http must be host:port, got 'nope'"
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_cli_reports_busy_port_in_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "plugin.cli", "serve", "--data-dir", str(tmp_path / "d"),
                               "--otlp-grpc", "127.0.0.1:0", "--otlp-http", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
                               "--http", f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("whyslow serve: error: cannot start:")


def test_readme_documents_every_setting():
    import dataclasses

    text = (ROOT / "plugin" / "README.md").read_text()
    for f in dataclasses.fields(ServeConfig):
        row = f"| `{f.name}` | `--{f.name.replace('_', '-')}` | `WHYSLOW_{f.name.upper()}` |"
        assert row in text, f.name
