"""The five "Gradients over training" demonstrations (viz/figures_training.py) each show their
effect by a margin, on the seeded runs `tx figures` draws; and each figure is written."""
import numpy as np
import pytest

from viz import figures as FIG
from viz import figures_training as ft


def test_saturated_tanh_first_layer_gradient_vanishes():
    _, num = ft.tanh_run(0)
    assert num["first_layer_grad"]["saturated"] * 100 <= num["first_layer_grad"]["control"]
    assert num["saturated_fraction"]["saturated"] > 0.6 > 0.1 > num["saturated_fraction"]["control"]
    sat = num["per_layer"]["saturated"]
    assert all(a < b for a, b in zip(sat, sat[1:]))             # smaller at every layer further from the loss


def test_too_high_learning_rate_kills_relus():
    _, num = ft.relu_run(0)
    assert num["final_dead"]["lr 0.05"] >= 0.5
    assert num["final_dead"]["lr 0.001"] <= 0.05
    assert num["dead"]["lr 0.05"][0] <= 0.05                    # alive at init: the steps killed them


def test_clipping_stops_the_explosion():
    runs, num = ft.clip_run(0)
    assert num["max_norm"]["no clipping"] >= 1e6 * num["max_norm"]["clip at 1.0"]
    assert num["steps"]["no clipping"] < 60                     # it overflowed and stopped early
    assert num["final_loss"]["clip at 1.0"] < 0.5 * runs["clip at 1.0"][0]["loss"]
    assert max(r["grad_norm"] for r in runs["clip at 1.0"]) == pytest.approx(1.0, rel=1e-3)   # what was applied


def test_post_norm_gradients_grow_toward_the_output():
    _, num = ft.norm_run(0)
    assert num["growth"]["post-norm"] >= 10
    assert num["growth"]["pre-norm"] <= 1
    pre_init = num["per_layer"]["pre-norm"]["init"]
    assert max(pre_init) / min(pre_init) < 1.2                  # pre-norm at init: every block alike


def test_attention_heads_collapse_on_the_copy_task():
    _, num = ft.attention_run(0)
    assert min(num["final"]["copy task"]) < 0.25
    assert max(num["final"]["no pattern"]) > 0.8 * num["uniform"]
    collapsed = num["heatmaps"]["collapsed"]                    # (T, T): each query on the key before it
    assert np.mean(collapsed[np.arange(1, ft.ATTN_T), np.arange(ft.ATTN_T - 1)]) > 0.9


def test_figures_registered_and_written(tmp_path):
    names = [name for name, _, _ in ft.FIGURES]
    assert all(FIG.FIGURES[n][0] == ft.SECTION for n in names)
    for path in FIG.make_figures(tmp_path, names, progress=False):
        assert path.read_bytes().startswith(b"\x89PNG")


def test_docs_quote_the_numbers_of_the_runs():
    import pathlib
    import re
    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "backprop.md").read_text(encoding="utf-8")
    section = re.split(r"^## ", text, flags=re.M)
    section = next(s for s in section if s.startswith(ft.SECTION))
    _, tanh = ft.tanh_run(0)
    _, relu = ft.relu_run(0)
    _, clip = ft.clip_run(0)
    _, norm = ft.norm_run(0)
    _, attn = ft.attention_run(0)
    quoted = [f"{tanh['ratio']:.0f}x", f"{tanh['saturated_fraction']['saturated']:.0%}",
              f"{tanh['first_layer_grad']['saturated']:.1e}", f"{relu['final_dead']['lr 0.05']:.0%} of them",
              f"{clip['max_norm']['no clipping']:.1e}", f"after {clip['steps']['no clipping']} steps",
              f"{clip['final_loss']['clip at 1.0']:.2f}", f"{norm['growth']['post-norm']:.0f}x",
              f"{norm['growth']['pre-norm']:.2f}x", f"{attn['uniform']:.2f} nats",
              *(f"{e:.2f}" for e in attn["final"]["copy task"] + attn["final"]["no pattern"])]
    missing = [q for q in quoted if q not in section]
    assert not missing, f"docs/backprop.md '{ft.SECTION}' does not quote {missing}"
