"""A small shop's per-node latencies with drift and partial faults (shift-score and watch tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from collector_processor import CallGraph, NodeInfo
from plugin.incident_ranking import MINUTE_NS, Periods

ENTRY = "fe:GET /checkout"
MEDIANS = {"fe:GET /checkout": 3.0, "net:cart:GET /cart": 0.5, "cart:GET /cart": 15.0, "net:pay:POST /pay": 0.5,
           "pay:POST /pay": 8.0, "pg:SELECT": 10.0}


def graph() -> CallGraph:
    g = CallGraph(ENTRY)
    g.nodes = {ENTRY: NodeInfo("fe", "GET /checkout", "span", "sum"),
               "net:cart:GET /cart": NodeInfo("cart", "GET /cart", "call_gap", "sum"),
               "cart:GET /cart": NodeInfo("cart", "GET /cart", "span"),
               "net:pay:POST /pay": NodeInfo("pay", "POST /pay", "call_gap", "sum"),
               "pay:POST /pay": NodeInfo("pay", "POST /pay", "span", "sum"),
               "pg:SELECT": NodeInfo("pg", "SELECT", "db")}
    g.call_edges = [(ENTRY, "net:cart:GET /cart"), ("net:cart:GET /cart", "cart:GET /cart"),
                    (ENTRY, "net:pay:POST /pay"), ("net:pay:POST /pay", "pay:POST /pay"),
                    ("pay:POST /pay", "pg:SELECT")]
    return g


def traffic(n: int, rng: np.random.Generator, scale: float = 1.0, slow: str | None = None, factor: float = 2.0,
            fraction: float = 0.05, start_ns: int = 0, spacing_ns: int = 10**9) -> pd.DataFrame:
    """Feature rows (latency per node, as the collector stores them): lognormal own times scaled by ``scale``
    (load drift moves every node together); ``slow``'s own time times ``factor`` on ``fraction`` of requests."""
    own = {node: m * scale * rng.lognormal(0.0, 0.15, n) for node, m in MEDIANS.items()}
    if slow is not None:
        hit = rng.random(n) < fraction
        own[slow] = np.where(hit, own[slow] * factor, own[slow])
    lat = {"pg:SELECT": own["pg:SELECT"], "cart:GET /cart": own["cart:GET /cart"]}
    lat["pay:POST /pay"] = own["pay:POST /pay"] + lat["pg:SELECT"]
    lat["net:pay:POST /pay"] = own["net:pay:POST /pay"] + lat["pay:POST /pay"]
    lat["net:cart:GET /cart"] = own["net:cart:GET /cart"] + lat["cart:GET /cart"]
    lat[ENTRY] = own[ENTRY] + lat["net:cart:GET /cart"] + lat["net:pay:POST /pay"]
    frame = pd.DataFrame(lat, index=[f"t{start_ns}-{i}" for i in range(n)])
    frame["__start_unix_nano"] = start_ns + np.arange(n) * spacing_ns
    return frame


def periods(base: pd.DataFrame, win: pd.DataFrame, lo: int) -> Periods:
    g = graph()
    p = Periods(lo, lo + 5 * MINUTE_NS, lo - 30 * MINUTE_NS, lo)
    p.graphs, p.window, p.history = {ENTRY: g}, {ENTRY: win}, {ENTRY: base}
    p.baseline = {ENTRY: base}
    return p
