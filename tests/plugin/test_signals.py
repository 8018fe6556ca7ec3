"""Ctrl-C / SIGTERM handling shared by `whyslow serve` and `whyslow demo` (plugin.signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from plugin.signals import stop_on_signals
from tests.support.serve import ROOT, ServeProcess, wait_until


def test_a_signal_only_sets_the_request_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals("test") as stop:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(stop.requested, timeout=5)
        assert stop.last == "SIGTERM" and stop.signals == 1
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_second_signal_exits_at_once_even_when_shutdown_hangs():
    script = textwrap.dedent("""
        import time
        from plugin.signals import stop_on_signals
        with stop_on_signals("prog") as stop:
            print("ready", flush=True)
            while not stop.requested():
                time.sleep(0.05)
            print("stopping", flush=True)
            time.sleep(600)  # a shutdown that never ends
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "stopping"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert "prog: SIGINT again, exiting now" in err and "Traceback" not in err


def test_serve_started_as_a_background_job_still_stops_on_ctrl_c(tmp_path):
    """A shell starts background jobs with Ctrl-C ignored; serve installs its own handler and stops cleanly."""
    serve = ServeProcess(tmp_path / "data", background=True).start()
    try:
        assert serve.proc is not None
        serve.proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        serve.proc.wait(30)
        assert time.monotonic() - t0 < 30
    finally:
        rc = serve.stop()
    assert rc == 0, serve.log
    assert "received SIGINT, shutting down" in serve.log
