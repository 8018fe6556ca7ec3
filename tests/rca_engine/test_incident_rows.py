"""`fit(..., incident=...)`: the incident's rows inform the mechanisms f (invariant under a fault), not the noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rca_engine
from tests.support.incident_rows import GRAPH, normal_and_incident


def test_incident_rows_fit_f_and_the_noise_stays_normal() -> None:
    normal, incident = normal_and_incident()
    model = rca_engine.fit(GRAPH, normal, "linear", incident=incident)
    mech = model.mechanisms["api"]
    both = pd.concat([normal, incident])
    design = np.column_stack([np.ones(len(both)), both[mech.parents_].to_numpy()])
    ols = np.linalg.lstsq(design, both["api"].to_numpy(), rcond=None)[0]
    assert mech.intercept_ == pytest.approx(ols[0]) and np.allclose(mech.coef_, ols[1:])  # f: all rows
    plain = rca_engine.fit(GRAPH, normal, "linear").mechanisms["api"]
    j = mech.parents_.index("db")
    assert plain.coef_[j] < 0.4 < 0.6 < mech.coef_[j]  # the normal rows alone hardly see the db's effect
    expected = normal["api"].to_numpy() - mech.predict(normal[mech.parents_].to_numpy())
    np.testing.assert_allclose(mech.noise_samples_, expected)  # noise: the normal rows' residuals only
    np.testing.assert_array_equal(model.mechanisms["db"].noise_samples_, normal["db"].to_numpy())  # roots: normal
    assert model.n_rows == len(normal)


@pytest.mark.parametrize("mechanisms", ["linear", "additive"])
def test_the_callee_is_blamed_once_the_incident_shows_its_effect(mechanisms: str) -> None:
    """Six draws of the system: with the incident's rows the db is named first every time (most of the score);
    from the normal rows alone the api's own noise takes the blame in most of them."""
    plain_hits = 0
    for seed in range(6):
        normal, incident = normal_and_incident(seed)
        outlier = incident.iloc[2]
        plain = rca_engine.fit(GRAPH, normal, mechanisms)
        plain_hits += rca_engine.attribute(plain, "api", outlier, base="upper").root_causes[0] == "db"
        with_incident = rca_engine.fit(GRAPH, normal, mechanisms, incident=incident)
        expl = rca_engine.attribute(with_incident, "api", outlier, base="upper")
        assert expl.root_causes[0] == "db", (seed, expl.contributions)
        assert expl.contributions["db"] > 0.6 * expl.outlier_score, (seed, expl.contributions)
    assert plain_hits <= 2
    intervals = rca_engine.attribute(with_incident, "api", outlier, base="upper", intervals=4, seed=2).intervals
    assert intervals["db"][0] > 0  # bootstrap refits keep the incident rows


def test_incident_input_errors_are_named() -> None:
    normal, incident = normal_and_incident()
    with pytest.raises(rca_engine.DataError, match="incident data lacks columns"):
        rca_engine.fit(GRAPH, normal, "linear", incident=incident.drop(columns=["cache"]))
    bad = incident.copy()
    bad.iloc[0, 0] = np.nan
    with pytest.raises(rca_engine.DataError, match="incident data has 1 rows with NaN"):
        rca_engine.fit(GRAPH, normal, "linear", incident=bad)
    one = rca_engine.fit(GRAPH, normal, "linear", incident=incident.iloc[0])  # a Series: one row
    assert one.incident is not None and one.incident.shape == (1, 3)
