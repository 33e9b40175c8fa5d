"""`innerdpo plot`'s figure: the legend is never clipped, whiskers are described and never zero-width fakes.
Checked by rendering and comparing bounding boxes."""

from __future__ import annotations

import pytest

from innerdpo_bench.cli.plot import plot_figure
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import locate, plotdata

from helpers.runs import pattern, write_run

NAMES = [f"hs-{kind}-InnerDPO align={align} α={alpha}" for kind in ("none", "ether", "supr")
         for align, alpha in (("para_signed", 0.1), ("cosine_cross_model", 1), ("logodds", 0.25))]


def bars(tmp_path, seeds_of=lambda k: (k,), group_seeds=False):
    runs = []
    for k in range(len(NAMES)):
        for seed in seeds_of(k):
            path = write_run(tmp_path / f"{k}-{seed}", {s: pattern(20, 8 + k + seed) for s in SHIFTS}, seed=seed,
                              dataset=f"data-{k}")  # a config per k: k is its own seed group
            runs.append(locate.load_run(path))
    return plotdata.bar_series(runs, group_seeds=group_seeds, resamples=200)


def labelled(series, names):
    """The bars relabelled with long display names, one per series in order."""
    order = list(dict.fromkeys(bar.label for bar in series))
    rename = dict(zip(order, names))
    return [plotdata.Bar(rename[bar.label], bar.shift, bar.value, bar.lo, bar.hi, bar.n_runs, bar.has_interval)
            for bar in series]


@pytest.mark.parametrize("size", [(8.0, 4.5), (6.0, 3.0)])
def test_the_legend_of_nine_long_names_lies_inside_the_figure(tmp_path, size):
    series = labelled(bars(tmp_path), NAMES)
    fig = plot_figure(series, "acc", *size, dpi=100)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    figure_box = fig.get_window_extent(renderer)
    (legend,) = fig.legends
    box = legend.get_window_extent(renderer)
    assert len(legend.get_texts()) == 9
    assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 and figure_box.y0 <= box.y0 and box.y1 <= figure_box.y1
    axes_box = fig.axes[0].get_window_extent(renderer)
    assert box.x0 >= axes_box.x1 - 1          # outside the axes: it hides no bar
    caption = fig._supxlabel.get_text()
    assert "95% bootstrap interval" in caption
    caption_box = fig._supxlabel.get_window_extent(renderer)
    assert figure_box.x0 <= caption_box.x0 and caption_box.x1 <= figure_box.x1


def test_a_single_seed_group_has_no_zero_width_whisker_and_the_caption_says_so(tmp_path):
    series = bars(tmp_path, seeds_of=lambda k: (1, 2) if k == 0 else (1,), group_seeds=True)
    single = [bar for bar in series if bar.n_runs == 1]
    assert single and not any(bar.has_interval for bar in single)
    assert all(bar.has_interval and bar.hi > bar.lo for bar in series if bar.n_runs == 2)
    fig = plot_figure(series, "acc", 8.0, 4.5, dpi=100, group_seeds=True)
    caption = fig._supxlabel.get_text()
    assert "± sample standard deviation over seeds" in caption and "one seed has no whisker" in caption
    import numpy as np

    drawn = [segment for collection in fig.axes[0].collections for segment in collection.get_segments()
             if len(segment) == 2 and np.isfinite(segment).all()]
    assert len(drawn) == 4                      # the two-seed series' four shifts; the others have none
    assert all(abs(segment[1][1] - segment[0][1]) > 0 for segment in drawn)   # every whisker drawn has a length
