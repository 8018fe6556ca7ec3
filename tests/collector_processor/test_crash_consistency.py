"""Crash consistency, as a property: SIGKILL the collector at random points during ingest (several seeds);
a sender resends what was not acknowledged (as OTLP exporters do); then every acknowledged span is stored
exactly once, no stored trace is ever marked complete while missing spans, and graph evidence counts every
trace once.

Each trace straddles two requests (its children in one, its root in the next, as SDKs export children
first), so a spool row always feeds traces that other rows feed too: the case where releasing rows one by
one used to let a replay replace a stored trace with a fragment.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from tests.support.otlp_build import request

from .test_assembly import chain

ROOT = Path(__file__).resolve().parents[2]
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
GROUP, GROUPS, SPANS = 8, 40, 4  # traces per request, requests (+1), spans per trace


def _batches() -> list[bytes]:
    """Request k: the children of group k and the roots of group k-1."""
    out = []
    for k in range(GROUPS + 1):
        spans = []
        if k < GROUPS:
            spans += [s for t in range(k * GROUP + 1, (k + 1) * GROUP + 1) for s in chain(t)[1:]]
        if k > 0:
            spans += [chain(t)[0] for t in range((k - 1) * GROUP + 1, k * GROUP + 1)]
        out.append(request(spans).SerializeToString())
    return out


class Server:
    def __init__(self, data: Path) -> None:
        port_file = data.parent / f"port-{time.monotonic_ns()}"
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.collector_processor.crash_server", str(data), str(port_file)],
                                     cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"crash server did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.02)
        self.port = int(port_file.read_text())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0, self.proc.stderr.read().decode()[-2000:]


def _send(port: int, batches: list[bytes], acked: set[int], stop: threading.Event) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        export = ch.unary_unary(EXPORT)
        for k, body in enumerate(batches):
            if k in acked:
                continue
            if stop.is_set():
                return
            try:
                export(body, timeout=10)
            except grpc.RpcError:
                return  # the server died: resend from here after the restart
            acked.add(k)
            time.sleep(0.02)


def _check_stored(db: Path, final: bool) -> None:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT trace_id, n_spans, complete FROM traces").fetchall()
        assert len({r[0] for r in rows}) == len(rows)
        broken = [(t, n) for t, n, complete in rows if complete and n != SPANS]
        assert not broken, f"traces marked complete while missing spans: {broken[:5]}"
        if final:
            assert len(rows) == GROUP * GROUPS and all(n == SPANS and c for _, n, c in rows)
            # graph evidence counted once per trace: the entry node was seen in exactly N traces
            (seen,) = con.execute("SELECT g.traces FROM graph_nodes g JOIN nodes e ON e.id = g.entry_id "
                                  "JOIN nodes n ON n.id = g.node_id WHERE e.node = 'svc:GET /r' "
                                  "AND n.node = 'svc:GET /r'").fetchone()
            assert seen == GROUP * GROUPS
            assert con.execute("SELECT COUNT(*) FROM spool").fetchone()[0] == 0
    finally:
        con.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_during_ingest_loses_nothing_and_never_corrupts(tmp_path, seed):
    rng = random.Random(seed)
    data = tmp_path / "data"
    batches = _batches()
    acked: set[int] = set()
    kills = 0
    for _ in range(3):  # up to three crashes at random moments, then a clean run to the end
        srv = Server(data)
        stop = threading.Event()
        sender = threading.Thread(target=_send, args=(srv.port, batches, acked, stop))
        sender.start()
        time.sleep(rng.uniform(0.05, 0.5))
        if len(acked) == len(batches):
            sender.join()
            srv.stop()
            break
        srv.kill()
        kills += 1
        stop.set()
        sender.join(30)
        _check_stored(data / "whyslow.sqlite3", final=False)
    else:
        srv = Server(data)
        _send(srv.port, batches, acked, threading.Event())
        time.sleep(0.5)
        srv.stop()
    assert kills >= 1 and len(acked) == len(batches)
    _check_stored(data / "whyslow.sqlite3", final=True)
