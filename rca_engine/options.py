"""Engine settings in one frozen object, and the named presets a user picks from.

Every setting of fitting, scoring and attribution lives in :class:`Options` (like DoWhy's ``ShapleyConfig``):
``fit`` stores the options on the model, and ``attribute`` / ``attribute_many`` / ``outlier_scores`` /
``bootstrap_intervals`` use the model's options unless given others, so one choice travels from fit to
explanation. Keyword arguments of those functions (``base=``, ``tail_fraction=``, ...) still work and override
single fields.

Presets (``rca_engine.preset(name)`` or ``preset=name``):

- ``"default"``: :class:`Options` () -- DoWhy's choices where they are sound for any data: two-sided
  ``median`` score, purely empirical noise, ``auto`` mechanisms.
- ``"latency"``: latencies of a call graph (what ``whyslow serve`` fits): one-sided ``upper`` score (an unusually
  fast request is nothing to explain) and exponential noise tails beyond each node's 90th percentile (calibrated
  scores from a few hundred traces).
- ``"metrics"``: metric tables of services (latency, error counts per interval, as in PetShop): ``latency``'s
  scores and tails, ``additive`` mechanisms (least squares shrunk toward the sum structure: a callee that never
  moved in normal data still passes its change on), and ``fit_on_sample``: the rows being explained also inform
  the mechanisms f, which the method's own assumption allows (a fault changes noise, never f) and which is the
  only data showing how far a change travels where normal operation never moved (with ``attribute_window``: every
  row of the incident window).
- ``"dowhy"``: DoWhy 0.14's exact algorithm (for comparisons).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

from .data import DEFAULT_MIN_ROWS
from .errors import MechanismError, RCAError
from .scoring import BASE_SCORES
from .tails import TAIL_METHODS

METHODS = ("auto", "exact", "permutation")
GAMES = ("counting", "tail")
DEFAULT_REFERENCE_SIZE = 10000
DEFAULT_WINDOW_THRESHOLD = 3.0  # nats (rarer than 1 in 20): a window's rows explained by attribute_window


@dataclass(frozen=True)
class Options:
    """Settings of fit, scoring and attribution (validated on creation; immutable; ``replace`` for variants).

    Fitting: ``mechanisms`` (for non-root nodes when ``fit`` gets none: "auto", "linear", "additive",
    "nonlinear", "maxlinear", "sum", "max"), ``tail_fraction`` (0-0.25: exponential noise tails beyond that
    training quantile; 0 = empirical, DoWhy's model), ``joint_noise``, ``reference_size`` (model samples behind each
    node's IT scorer), ``min_rows``, ``dropna``, ``seed``.
    Scoring: ``base`` ("median" two-sided, "upper" one-sided: only large values are outliers, "zscore") and
    ``tail`` ("fitted" extrapolated tail, "dowhy" counting).
    Attribution: ``game`` ("counting" scaled to the fitted-tail score, or "tail"), ``method`` ("auto", "exact",
    "permutation"), ``num_samples`` (None: 3,000 exact, 1,000 sampling), ``max_permutations``, ``tolerance``,
    ``dowhy_compatible`` (DoWhy 0.14's exact algorithm), ``fit_on_sample`` (the explained rows also fit f),
    ``window_threshold`` (nats: the rows of an incident window that ``attribute_window`` explains).
    """

    mechanisms: str = "auto"
    tail_fraction: float = 0.0
    joint_noise: bool = False
    reference_size: int = DEFAULT_REFERENCE_SIZE
    min_rows: int = DEFAULT_MIN_ROWS
    dropna: bool = False
    seed: int = 0
    base: str = "median"
    tail: str = "fitted"
    game: str = "counting"
    method: str = "auto"
    num_samples: int | None = None
    max_permutations: int = 256
    tolerance: float = 0.01
    dowhy_compatible: bool = False
    fit_on_sample: bool = False
    window_threshold: float = DEFAULT_WINDOW_THRESHOLD

    def __post_init__(self) -> None:
        from .mechanisms import (
            MECHANISM_NAMES,  # mechanisms imports nothing from here; late to keep layers flat
        )

        if not isinstance(self.mechanisms, str) or self.mechanisms not in MECHANISM_NAMES:
            raise MechanismError(f"unknown mechanism {self.mechanisms!r}; choose one of {', '.join(MECHANISM_NAMES)}")
        if not 0.0 <= float(self.tail_fraction) <= 0.25:
            raise RCAError(f"tail_fraction must be in [0, 0.25], got {self.tail_fraction}")
        if self.base not in BASE_SCORES:
            raise RCAError(f"unknown base score {self.base!r}; choose one of {', '.join(BASE_SCORES)}")
        if self.tail not in TAIL_METHODS:
            raise RCAError(f"unknown tail estimator {self.tail!r}; choose one of {', '.join(TAIL_METHODS)}")
        if self.game not in GAMES:
            raise RCAError(f"unknown game {self.game!r}; choose one of {', '.join(GAMES)}")
        if self.method not in METHODS:
            raise RCAError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.num_samples is not None and int(self.num_samples) < 100:
            raise RCAError(f"num_samples must be at least 100, got {self.num_samples}")
        if int(self.reference_size) < 100:
            raise RCAError(f"reference_size must be at least 100, got {self.reference_size}")
        if int(self.min_rows) < 1:
            raise RCAError(f"min_rows must be at least 1, got {self.min_rows}")
        if int(self.max_permutations) < 2:
            raise RCAError(f"max_permutations must be at least 2, got {self.max_permutations}")
        if not float(self.tolerance) > 0:
            raise RCAError(f"tolerance must be positive, got {self.tolerance}")
        if not float(self.window_threshold) >= 0:
            raise RCAError(f"window_threshold must be >= 0 nats, got {self.window_threshold}")

    def replace(self, **changes: object) -> Options:
        """A copy with some fields changed (unknown names raise :class:`RCAError`)."""
        unknown = sorted(set(changes) - FIELD_NAMES)
        if unknown:
            raise RCAError(f"unknown option(s) {', '.join(unknown)}; options are {', '.join(sorted(FIELD_NAMES))}")
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict of every field."""
        return asdict(self)


FIELD_NAMES = frozenset(f.name for f in fields(Options))

PRESETS: Mapping[str, Options] = {
    "default": Options(),
    "latency": Options(base="upper", tail_fraction=0.1),
    "metrics": Options(base="upper", tail_fraction=0.1, mechanisms="additive", fit_on_sample=True),
    "dowhy": Options(dowhy_compatible=True, tail="dowhy"),
}


def preset(name: str) -> Options:
    """The named preset (``"default"``, ``"latency"``, ``"metrics"``, ``"dowhy"``)."""
    if not isinstance(name, str) or name not in PRESETS:
        raise RCAError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def resolve(current: Options | None, preset_name: str | None = None, options: Options | None = None,
            **overrides: object) -> Options:
    """The options of one call: ``options`` or the ``preset_name`` preset or ``current`` (else the defaults), then
    the keyword ``overrides`` that are not None."""
    if options is not None and preset_name is not None:
        raise RCAError("give either preset= or options=, not both")
    if options is not None and not isinstance(options, Options):
        raise RCAError(f"options must be rca_engine.Options, got {type(options).__name__}")
    start = options if options is not None else preset(preset_name) if preset_name is not None else current or Options()
    changes = {k: v for k, v in overrides.items() if v is not None}
    return start.replace(**changes) if changes else start
