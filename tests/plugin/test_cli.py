"""plugin.cli: one sub-command per module of plugin/commands, help without a command, exit codes."""

from __future__ import annotations

import pytest

from plugin import cli


def test_every_command_module_is_registered() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(cli.COMMANDS) == {"rca", "regression", "serve", "demo", "mcp"}
    required = {"rca": ["--graph", "g.json", "--train", "t.csv", "--sample", "s.csv", "--target", "t"],
                "regression": ["--graph", "g.json", "--baseline", "b.csv", "--comparison", "c.csv", "--target", "t"]}
    for name in cli.COMMANDS:
        args = parser.parse_args([name] + required.get(name, []))
        assert args.command == name and callable(args.func)
        assert args.func.__module__ == f"plugin.commands.{name}"


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: whyslow") and all(name in out for name in cli.COMMANDS)


def test_unknown_commands_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["explode"])
    assert exc.value.code == 2 and "invalid choice: 'explode'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out == f"whyslow {cli._version()}\n"
