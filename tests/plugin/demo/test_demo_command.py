"""`whyslow demo` as a user runs it: a subprocess with a real server, real OTLP spans, a fault and a verdict."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from plugin.demo.site import retail_site

ROOT = Path(__file__).resolve().parents[3]
SMALL = ["--warmup-traces", "300", "--fault-traces", "6", "--no-progress", "--timeout", "90"]
NAMES = {s.name: s.display for s in retail_site().services.values()}


def _demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHYSLOW_")}
    return subprocess.run([sys.executable, "-m", "plugin.cli", "demo", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "service"), [
    (None, "caching-service"),  # the default: the caching service slows down
    ("product-db", "product-db"),  # slow database (reached only on cache misses)
    ("net:shipping-cost", "shipping-cost"),  # network delay on the call into a service
])
def test_demo_finds_the_injected_fault(fault, service):
    args = [*SMALL, "--seed", "3"] + (["--fault", fault] if fault else [])
    proc = _demo(*args)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "Traceback" not in proc.stderr
    display = NAMES[service]
    lines = out.strip().splitlines()
    assert lines[-1].startswith(f"VERDICT: PASS top root cause {display} matches injected fault"), lines[-1]
    # every explained trace's top-ranked cause, as printed, is the injected service
    tops = re.findall(r"^  1\. (.+?)  ", out, flags=re.M)
    assert tops, out
    expected = f"network → {display}" if fault and fault.startswith("net:") else display
    assert all(t.strip().startswith(expected) for t in tops), tops
    m = re.search(r"flagged (\d+) slow requests as outliers: (\d+) of the 6 requests sent during the fault", out)
    assert m and int(m.group(2)) >= 1, out
    assert re.search(r"had (the network into )?" + re.escape(display) + " been normal", out)
    kind = {"caching-service": "a malfunctioning service", "product-db": "a slow database",
            "shipping-cost": "the network on the calls into"}[service]
    assert re.search(rf"^Answer: .*{kind}.*{re.escape(display)}", out, flags=re.M), out
    assert re.search(r"^   All [\d,]+ spans sent over OTLP were accepted by whyslow\.$", out, flags=re.M), out
    urls = re.findall(r"http://127\.0\.0\.1:\d+/ui/\?traceId=([0-9a-f]{32})", out)
    assert urls and all(f"/api/v1/traces/{t}/rca" in out for t in urls)


@pytest.mark.slow
def test_a_kept_data_dir_does_not_mix_runs(tmp_path):
    """A second run on the same --data-dir (model loaded from disk, earlier outliers stored) judges only its own
    requests."""
    first = _demo(*SMALL, "--fault", "order-service", "--data-dir", str(tmp_path))
    assert first.returncode == 0, first.stdout + first.stderr
    second = _demo(*SMALL, "--fault", "shipping-cost", "--data-dir", str(tmp_path), "--seed", "11")
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    assert out.strip().splitlines()[-1].startswith("VERDICT: PASS top root cause Shipping Cost Service matches")
    assert "Order Service" not in "".join(re.findall(r"^  1\. .*$", out, flags=re.M))
    assert (tmp_path).is_dir() and any(tmp_path.iterdir()), "the kept data directory is not removed"


@pytest.mark.slow
def test_a_fault_too_small_to_matter_fails_the_verdict():
    proc = _demo(*SMALL, "--fault", "shipping-cost", "--fault-delay", "0.001")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("VERDICT: FAIL")
    assert "Traceback" not in proc.stderr


def test_list_faults():
    proc = _demo("--list-faults", timeout=60)
    assert proc.returncode == 0
    for name in ("caching-service", "product-db", "net:shipping-cost", "website"):
        assert re.search(rf"^  {re.escape(name)}\s", proc.stdout, flags=re.M), proc.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--fault", "payment-service"], "unknown fault 'payment-service'; choose one of:"),
    (["--warmup-traces", "5"], "--warmup-traces must be between 50 and 100000"),
    (["--rate", "0"], "--rate must be between"),
    (["--explain", "0"], "--explain must be between 1 and 20"),
    (["--fault-delay", "-1"], "fault delay must be a positive number"),
    (["--duration", "-5"], "--duration must be between 0 and 604800 seconds"),
])
def test_bad_options_are_clear_errors(args, message, capsys):
    from plugin.cli import main

    assert main(["demo", *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_address_from_the_command_line():
    proc = _demo("--http", "not-an-address", timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "http must be host:port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_busy_port_is_a_clear_failure():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = _demo("--no-progress", "--http", f"127.0.0.1:{port}", timeout=60)
    assert proc.returncode == 1
    assert f"cannot bind the REST API to 127.0.0.1:{port}" in proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "VERDICT: FAIL the whyslow server could not start"
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("sig", "background"), [("SIGINT", False), ("SIGTERM", False), ("SIGINT", True)])
def test_keep_running_stops_cleanly_on_ctrl_c_and_sigterm(sig, background):
    """--keep-running serves until Ctrl-C or SIGTERM, then stops within seconds, exit 0, verdict still last; also
    when started as a shell's background job, which ignores Ctrl-C (Python then raises no KeyboardInterrupt)."""
    import signal
    import time

    def as_background_job() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    env = {k: v for k, v in os.environ.items() if not k.startswith("WHYSLOW_")}
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "plugin.cli", "demo", *SMALL, "--seed", "4",
                             "--keep-running", "--rate", "50"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=as_background_job if background else None)
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Still serving"):
                break
        assert lines and lines[-1].startswith("Still serving until Ctrl-C"), lines
        time.sleep(1.5)  # it is sending live traffic now (50 requests/s): the signal lands amid exports
        t0 = time.monotonic()
        proc.send_signal(getattr(signal, sig))
        try:
            rest, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:  # the demo's own watchdog should have ended it: show where it hangs
            proc.send_signal(signal.SIGABRT)
            rest, err = proc.communicate(timeout=30)
            pytest.fail(f"still running 60 s after {sig}; stderr:\n{err[-8000:]}")
        assert time.monotonic() - t0 < 30, err[-8000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    tail = rest.strip().splitlines()
    assert tail[0] == "stopping" and tail[-1].startswith("VERDICT: PASS"), tail
