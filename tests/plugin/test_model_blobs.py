"""Persisted models are never unpickled unless authenticated: a malicious blob in the data directory runs no
code, is reported with a warning, and the model is refitted; the data directory and files are private."""

from __future__ import annotations

import logging
import pickle
import stat

from plugin import model_blobs
from plugin.config import ServeConfig
from plugin.demo.shop_traffic import ENTRY, ShopTraffic
from plugin.server import WhySlowServer
from tests.support.serve import wait_until


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):  # unpickling this writes the marker file: code execution
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def _config(tmp_path, **kw) -> ServeConfig:
    return ServeConfig(data_dir=str(tmp_path / "data"), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0",
                       http="127.0.0.1:0", grpc="127.0.0.1:0", min_traces=40, window=500, refit_interval_s=3600,
                       trace_timeout_s=0.2, model_key_file=str(tmp_path / "keys" / "model.key"), **kw).validate()


def test_malicious_blob_runs_no_code_warns_and_refits(tmp_path, caplog):
    cfg = _config(tmp_path)
    with WhySlowServer(cfg) as server:
        traffic = ShopTraffic(server.url("otlp_grpc"), seed=41)
        try:
            traffic.send(45)
            wait_until(lambda: server.models.get(ENTRY))
        finally:
            traffic.close()
        blob, _ = server.store.load_model(ENTRY)
        assert blob.startswith(model_blobs.MAGIC)
    # the key lives outside the data dir, private
    assert stat.S_IMODE((tmp_path / "keys" / "model.key").stat().st_mode) == 0o600
    data = tmp_path / "data"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for f in [data / "whyslow.sqlite3", *data.glob("whyslow.sqlite3-*"), *(data / "spool").glob("seg-*")]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f

    # a clean restart loads the signed model at once
    with WhySlowServer(_config(tmp_path)) as server:
        assert server.models.get(ENTRY) is not None

    marker = tmp_path / "pwned"
    for evil in (pickle.dumps(_Evil(str(marker))),  # a bare pickle, as the old format was
                 model_blobs.MAGIC + bytes(32) + pickle.dumps(_Evil(str(marker)))):  # a forged tag
        with WhySlowServer(_config(tmp_path)) as server:
            server.store.save_model(ENTRY, evil)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="whyslow.models"), WhySlowServer(_config(tmp_path)) as server:
            assert not marker.exists(), "unpickling the stored blob ran code"
            assert any("ignoring the stored model" in r.getMessage() and ENTRY in r.getMessage()
                       for r in caplog.records)
            refitted = wait_until(lambda: server.models.get(ENTRY))  # refitted from the stored traces
            assert refitted.rows >= 40
        assert not marker.exists()


def test_blobs_signed_with_another_key_are_rejected(tmp_path):
    key_a, key_b = model_blobs.model_key(str(tmp_path / "a")), model_blobs.model_key(str(tmp_path / "b"))
    assert key_a != key_b and model_blobs.model_key(str(tmp_path / "a")) == key_a  # created once, then read
    blob = model_blobs.dump({"x": [1, 2]}, key_a)
    assert model_blobs.load(blob, key_a) == {"x": [1, 2]}
    for bad in (blob[:-1] + b"!", blob):
        try:
            model_blobs.load(bad, key_b if bad is blob else key_a)
        except model_blobs.BlobRejected:
            continue
        raise AssertionError("a blob that does not verify was loaded")
    # derived from the auth token when no key file is set: stable across restarts, never in the data dir
    assert model_blobs.model_key(None, "tok") == model_blobs.model_key(None, "tok") != model_blobs.model_key(None, "x")
