"""plugin.demo.client: the demo's REST client against a real in-process whyslow server (auth on), and against a
port where nothing listens."""

from __future__ import annotations

import socket

import pytest

from plugin.config import ServeConfig
from plugin.demo.client import ApiError, RestClient
from plugin.demo.shop_traffic import ENTRY, ShopTraffic
from plugin.server import WhySlowServer
from tests.support.serve import wait_until

TOKEN = "demo-client-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("client")
    config = ServeConfig(data_dir=str(data), otlp_grpc="127.0.0.1:0", otlp_http="127.0.0.1:0", http="127.0.0.1:0",
                         grpc="127.0.0.1:0", auth_token=TOKEN, min_traces=1000, trace_timeout_s=0.2).validate()
    with WhySlowServer(config) as srv:
        yield srv


def test_url_drops_unset_query_values() -> None:
    c = RestClient("http://127.0.0.1:9/")
    assert c.url("/api/v1/outliers") == "http://127.0.0.1:9/api/v1/outliers"
    assert c.url("/x", limit=5, **{"from": None}) == "http://127.0.0.1:9/x?limit=5"
    assert c.url("/x", q="a b&c") == "http://127.0.0.1:9/x?q=a+b%26c"


def test_authorised_calls_read_status_outliers_and_model_state(server) -> None:
    client = RestClient(server.url("http"), token=TOKEN, timeout_s=10)
    assert client.healthy()
    status = client.status()
    assert isinstance(status, dict) and status["models"] == []
    assert client.model_state() == ("absent", None) and client.outliers(limit=5) == []
    shop = ShopTraffic(f"127.0.0.1:{server.ports['otlp_grpc']}", seed=1, headers={"authorization": f"Bearer {TOKEN}"})
    try:
        sent = shop.send(3)
    finally:
        shop.close()
    assert wait_until(lambda: client.model_state(ENTRY)[0] == "learning", 20)
    state, model = client.model_state(ENTRY)
    assert model is not None and model["entry"] == ENTRY and model["traces_seen"] == len(sent)
    assert client.model_state("shop:GET /nothing") == ("absent", None)
    with pytest.raises(ApiError, match=r"GET /api/v1/traces/[0-9a-f]{32}/rca answered 409: .*learning"):
        client.rca(sent[0].trace_id)  # stored, but no model yet


def test_errors_name_the_request_and_the_answer(server) -> None:
    anonymous = RestClient(server.url("http"), timeout_s=10)
    with pytest.raises(ApiError, match=r"GET /api/v1/status answered 401: "):
        anonymous.status()
    authorised = RestClient(server.url("http"), token=TOKEN, timeout_s=10)
    with pytest.raises(ApiError, match=r"answered 404: .*not stored"):
        authorised.rca("0" * 31 + "1")
    with pytest.raises(ApiError, match=r"answered 400"):
        authorised.rca("not-a-trace-id")


def test_an_unreachable_server_is_an_api_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        client = RestClient(f"http://127.0.0.1:{port}", timeout_s=2)
        assert client.healthy() is False
        with pytest.raises(ApiError, match=r"GET /api/v1/status failed: "):
            client.status()
