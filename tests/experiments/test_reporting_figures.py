"""The report's figures read right (issue 25 part 10, issue 28 point 3): no text under 9 pt,
sparse probes as markers with lines only between consecutive probed shifts, arms that
overlap still apart, tanh layers drawn by their saturation fraction, one figure per probed
network, and the probe-vs-adaptation scatter."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.text import Text

from experiments.reporting import figures
from experiments.reporting.figures import figure_names, probe_panels, segments, write_figures
from tests.experiments.test_reporting_report import _report, _tables

EPS = "hessian/eps_rank_paper/rel0.01"


def test_segments_split_at_every_missing_shift():
    assert segments([1, 2, 3, 5, 7, 8]) == [slice(0, 3), slice(3, 4), slice(4, 6)]
    assert segments([4]) == [slice(0, 1)] and segments([]) == []


@pytest.fixture(scope="module")
def tanh_summary():
    """The synthetic study with a tanh policy network's probes: dormancy 0 everywhere (tanh),
    a saturation fraction of one layer, an eps-rank probed at odd shifts only, and a probe on which
    continual and fresh agree exactly (so one would hide the other without the offset)."""
    data = _tables()
    p = data.probes.copy()
    p["network"] = "policy"
    shift = p["task_id"].to_numpy()
    p["features/hidden.0/dormant_fraction"] = 0.0
    p["features/hidden.1/dormant_fraction"] = 0.0  # a layer whose saturation is not drawn
    p["features/hidden.0/saturated_fraction"] = 0.05 * shift
    p[EPS] = np.where(shift % 2 == 1, 0.1 * shift, np.nan)
    p["weights/norm"] = 1.0 + 0.1 * shift  # the same for every arm
    data.probes = p.drop(columns=["driver", "noise"])
    summary, _ = _report(data, study={"report": {"key_arms": ["continual", "fresh"]}})
    return summary


def _drawn(summary, tmp_path, monkeypatch):
    """Draw the figures, keeping each matplotlib figure open for inspection."""
    kept = {}

    def save(fig, path, legend_rows=0):
        fig.canvas.draw()
        kept[path.name] = fig

    monkeypatch.setattr(figures, "_save", save)
    write_figures(summary, tmp_path)
    return kept


def test_tanh_layers_show_saturation_instead_of_zero_dormancy(tanh_summary):
    (panels,) = probe_panels(tanh_summary).values()
    metrics = [c.split("/", 3)[3] for c, _ in panels]
    assert "features/hidden.0/saturated_fraction" in metrics
    assert not [m for m in metrics if m.endswith("dormant_fraction")]  # 0 for tanh units
    assert {EPS, "weights/norm"} <= set(metrics)


def test_one_figure_per_network_and_the_scatter(tanh_summary):
    names = figure_names(tanh_summary)
    assert names["probes_policy"] == "synthetic_probes_policy.png"
    assert names["scatter"] == "synthetic_probe_vs_adaptation.png"
    assert "probes" not in names


def test_sparse_probes_are_markers_and_overlapping_arms_stay_apart(tanh_summary, tmp_path,
                                                                   monkeypatch):
    fig = _drawn(tanh_summary, tmp_path, monkeypatch)["synthetic_probes_policy.png"]
    axes = {ax.get_title().split("\n")[0]: ax for ax in fig.axes if ax.get_visible()}
    def data_lines(ax):  # the arms' markers and lines (error-bar caps aside)
        return [line for line in ax.get_lines() if line.get_marker() in figures.MARKERS]

    eps = data_lines(axes[EPS])
    # probed at 1, 3, 5, 7: each is its own marker, no line across the unprobed shifts
    assert len(eps) == 2 * 4 and all(len(line.get_xdata()) == 1 for line in eps)
    same = data_lines(axes["weights/norm"])
    by_arm = {}
    for line in same:
        by_arm.setdefault(line.get_color(), []).append(line)
    assert len(by_arm) == 2  # continual and fresh, in different colours ...
    (a,), (b,) = by_arm.values()
    assert np.allclose(a.get_ydata(), b.get_ydata())       # ... on the very same values,
    assert np.all(np.abs(a.get_xdata() - b.get_xdata()) > 0.05)  # yet side by side
    assert a.get_marker() != b.get_marker()


def test_every_text_of_every_figure_is_at_least_9_pt(tanh_summary, tmp_path, monkeypatch):
    drawn = _drawn(tanh_summary, tmp_path, monkeypatch)
    assert set(drawn) == set(figure_names(tanh_summary).values())
    for name, fig in drawn.items():
        sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
        assert sizes and min(sizes) >= 9, name


def test_the_scatter_holds_one_point_per_run_and_shift(tanh_summary):
    panels = dict(tanh_summary.scatter)
    points = {p.label: p for p in panels["init/policy/on_policy/features/hidden.0/saturated_fraction"]}
    # 5 seeds x 8 shifts per arm; x is the probe, y the shift's adaptation target
    assert len(points["continual"].x) == len(points["fresh"].y) == 40
    assert sorted(set(points["continual"].x)) == pytest.approx([0.05 * k for k in range(1, 9)])


def test_a_relu_network_keeps_its_dormant_fraction_even_at_zero():
    data = _tables()
    data.probes = data.probes.assign(**{"features/hidden.0/dormant_fraction": 0.0}).drop(
        columns=["driver", "noise"])
    summary, _ = _report(data, study={"report": {"key_arms": ["continual", "fresh"]}})
    (panels,) = probe_panels(summary).values()
    assert [c for c, _ in panels] == ["init/q/on_policy/features/hidden.0/dormant_fraction"]
