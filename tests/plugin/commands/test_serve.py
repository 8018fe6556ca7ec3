"""plugin.commands.serve: one flag per setting, secrets redacted from every log line, config errors in one line."""

from __future__ import annotations

import argparse
import logging

import pytest

from plugin.commands import serve
from plugin.config import FIELDS


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="whyslow")
    serve.register(top.add_subparsers(dest="command"))
    return top


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in ("waitress", "werkzeug", "urllib3")})
    yield root
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def test_every_setting_is_a_documented_flag_left_unset_by_default(parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args(["serve"])
    assert args.func is serve.run and args.config is None
    assert all(getattr(args, name) is None for name in FIELDS)  # unset: env, file and defaults decide
    assert set(FIELDS) <= set(serve.HELP)
    flags = ["serve", "--config", "c.yaml"]
    for name in FIELDS:
        flags += ["--" + name.replace("_", "-"), f"v-{name}"]
    args = parser.parse_args(flags)
    assert args.config == "c.yaml" and all(getattr(args, name) == f"v-{name}" for name in FIELDS)


def test_the_redact_filter_masks_every_secret_and_leaves_other_records_alone() -> None:
    redact = serve._Redact(["s3cret-token", "", "grafana-key"])
    assert redact.secrets == ["s3cret-token", "grafana-key"]
    rec = logging.LogRecord("whyslow", logging.INFO, __file__, 1, "auth %s then %s", ("s3cret-token", "grafana-key"),
                            None)
    assert redact.filter(rec) is True
    assert rec.getMessage() == "auth *** then ***" and rec.args is None
    plain = logging.LogRecord("whyslow", logging.INFO, __file__, 1, "scored %d traces", (5,), None)
    assert redact.filter(plain) and plain.args == (5,) and plain.getMessage() == "scored 5 traces"
    nothing = serve._Redact(["", ""])
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s", ("abc",), None)
    assert nothing.filter(rec) and rec.args == ("abc",)


def test_setup_logging_installs_one_redacting_handler(root_logging: logging.Logger,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    serve.setup_logging("debug", ["tok-123"])
    assert len(root_logging.handlers) == 1 and root_logging.level == logging.DEBUG
    assert logging.getLogger("werkzeug").level == logging.WARNING
    logging.getLogger("whyslow.test").warning("header Bearer %s refused", "tok-123")
    err = capsys.readouterr().err
    assert "header Bearer *** refused" in err and "tok-123" not in err and "WARNING whyslow.test" in err
    serve.setup_logging("error", [])
    assert root_logging.level == logging.ERROR and logging.getLogger("urllib3").level == logging.ERROR


@pytest.mark.parametrize(("flag", "value"), [("min_traces", "many"), ("http", "nowhere"), ("log_level", "loud")])
def test_a_bad_setting_is_one_line_and_exit_code_2(parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch, tmp_path, flag: str,
                                                   value: str) -> None:
    for name in FIELDS:
        monkeypatch.delenv("WHYSLOW_" + name.upper(), raising=False)
    args = parser.parse_args(["serve", "--data-dir", str(tmp_path), "--" + flag.replace("_", "-"), value])
    assert serve.run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("whyslow serve: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing was started or written
