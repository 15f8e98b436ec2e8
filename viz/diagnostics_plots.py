"""Matplotlib plots of Diagnostics records (transformer/diagnostics.py): the same five views
as the live dashboard (loss, gradient norm per parameter over steps as a log heatmap, update
ratio per parameter with the 1e-3 line, attention entropy per layer and head, saturation), for
Jupyter (`plot_diagnostics(records)` returns the Figure) and for `tx report --png`.

Every function builds a Figure on its own Agg canvas (no pyplot, no global state).
A None in a record (a non-finite number, written as null) is drawn as a gap."""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

UPDATE_RATIO_REFERENCE = 1e-3        # the rule of thumb: ||lr * update|| / ||w|| around 1e-3


def _figure(w, h):
    fig = Figure(figsize=(w, h), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _num(xs):
    return np.array([np.nan if x is None else x for x in xs], dtype=float)


def _steps(records):
    return np.array([r["step"] for r in records])


# ----------------------------------------------------------------------------- panels
def loss_panel(ax, records):
    ax.plot(_steps(records), _num([r.get("loss") for r in records]), color="C0")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("loss")


def grad_heatmap_panel(ax, records, fig=None):
    """Parameters (rows, in model order) x recorded steps, colour = log gradient norm."""
    names = list(records[-1].get("params") or {}) if records else []
    grid = np.array([[((r.get("params") or {}).get(n) or {}).get("grad_norm") or np.nan for r in records] for n in names], float)
    finite = grid[np.isfinite(grid) & (grid > 0)]
    norm = LogNorm(vmin=finite.min(), vmax=finite.max()) if finite.size else None
    _step_heatmap(ax, fig, grid if finite.size else None, records, names, "viridis", norm, "gradient norm (log)", 20)
    ax.set_title("gradient norm per parameter over steps")


def _step_heatmap(ax, fig, grid, records, labels, cmap, norm, bar_label, crowded):
    """rows x recorded steps as an image (grid None: axes only), one labelled row each."""
    if grid is not None:
        im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=cmap, norm=norm,
                       extent=(records[0]["step"] - 0.5, records[-1]["step"] + 0.5, len(labels) - 0.5, -0.5))
        if fig is not None:
            fig.colorbar(im, ax=ax, label=bar_label)
    ax.set_yticks(range(len(labels)), labels, fontsize=5 if len(labels) > crowded else 8)
    ax.set_xlabel("step")


def update_ratio_panel(ax, records):
    last = (records[-1].get("params") or {}) if records else {}
    names = [n for n, row in last.items() if "update_ratio" in row]
    steps = _steps(records)
    for n in names:
        ax.plot(steps, _num([((r.get("params") or {}).get(n) or {}).get("update_ratio") for r in records]), lw=0.8, alpha=0.7)
    ax.axhline(UPDATE_RATIO_REFERENCE, color="black", ls="--", lw=1, label="1e-3")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("||lr * update|| / ||w||")
    ax.set_title("update ratio per parameter")
    ax.legend(loc="upper right", fontsize=8)


def entropy_panel(ax, records, fig=None):
    """Rows: layer x head; columns: recorded steps; colour: attention entropy (nats)."""
    recs = [r for r in records if "attention" in r and any("entropy" in a for a in r["attention"].values())]
    if not recs:
        ax.text(0.5, 0.5, "no attention layers", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    layers = [k for k, a in recs[-1]["attention"].items() if "entropy" in a]
    labels = [f"{k} h{h}" for k in layers for h in range(len(recs[-1]["attention"][k]["entropy"]))]
    grid = np.array([[e for k in layers for e in (r["attention"].get(k, {}).get("entropy")
                                                  or [np.nan] * len(recs[-1]["attention"][k]["entropy"]))]
                     for r in recs], float).T                           # (layers x heads, steps)
    _step_heatmap(ax, fig, grid, recs, labels, "magma", None, "entropy (nats)", 16)
    ax.set_title("attention entropy per layer and head")


def saturation_panel(ax, records):
    keys = list(records[-1].get("activations", {})) if records else []
    steps = _steps(records)
    for k in keys:
        ax.plot(steps, _num([(r.get("activations") or {}).get(k, {}).get("saturated") for r in records]), label=k)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step")
    ax.set_ylabel("fraction saturated")
    ax.set_title("non-linearity inputs in the flat region")
    if keys:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no non-linearities recorded", ha="center", va="center", transform=ax.transAxes)


PANELS = {"loss": loss_panel, "grad_norms": grad_heatmap_panel, "update_ratio": update_ratio_panel,
          "attention_entropy": entropy_panel, "saturation": saturation_panel}


def usable(records):
    """The records with a step (a hand-edited or foreign line without one is left out)."""
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("step"), (int, float))]


def plot_diagnostics(records):
    """All five views of a run (Diagnostics.records or read_records(path)) in one Figure."""
    records = usable(records)
    fig = _figure(14, 10)
    axes = fig.subplot_mosaic([["loss", "update_ratio"], ["grad_norms", "attention_entropy"], ["saturation", "."]])
    for name, ax in axes.items():
        panel = PANELS[name]
        panel(ax, records, fig) if name in ("grad_norms", "attention_entropy") else panel(ax, records)
    return fig


def panel_figures(records):
    """{name: Figure} with one view each (the PNGs of `tx report --png`)."""
    records = usable(records)
    out = {}
    for name, panel in PANELS.items():
        fig = _figure(8, 5)
        ax = fig.add_subplot()
        panel(ax, records, fig) if name in ("grad_norms", "attention_entropy") else panel(ax, records)
        out[name] = fig
    return out


# ----------------------------------------------------------------------------- demo figures
def _lines(ax, series, xlabel, ylabel, logy=True):
    for name, ys in series.items():
        ys = _num(ys)
        ax.plot(np.arange(len(ys)), ys, marker="o" if len(ys) <= 12 else None, ms=3, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


def paired_layers_figure(per_layer, xlabel, ylabel, second, title, second_is_layers=False):
    """Left: one line per run over the layers; right: `second` = [series, xlabel, ylabel]."""
    fig = _figure(11, 4)
    a, b = fig.subplots(1, 2)
    _lines(a, per_layer, xlabel, ylabel)
    _lines(b, *second)
    for ax in (a, b) if second_is_layers else (a,):
        ax.set_xticks(range(len(next(iter(per_layer.values())))))
    fig.suptitle(title)
    return fig


def curves_figure(panels, title):
    """One axis per (series, ylabel, logy), x = step."""
    fig = _figure(5.5 * len(panels), 4)
    for ax, (series, ylabel, logy) in zip(np.atleast_1d(fig.subplots(1, len(panels))), panels):
        _lines(ax, series, "step", ylabel, logy)
    fig.suptitle(title)
    return fig


def entropy_figure(entropy, heatmaps, heads, uniform, title):
    """Left: each head's entropy over steps in each run, the uniform level dashed; then the
    attention heatmap of the collapsed head and of the spread one."""
    fig = _figure(14, 4.2)
    a, b, c = fig.subplots(1, 3, width_ratios=[1.4, 1, 1])
    for k, (name, rows) in enumerate(entropy.items()):
        rows = np.array(rows)                                           # (steps, H)
        for h in range(rows.shape[1]):
            a.plot(rows[:, h], color=f"C{k}", ls=("-", ":", "--", "-.")[h % 4], label=f"{name}, head {h}")
    a.axhline(uniform, color="grey", ls="--", lw=1, label="uniform")
    a.set_xlabel("step")
    a.set_ylabel("entropy (nats, mean over queries)")
    a.legend(fontsize=7)
    for ax, key, what in ((b, "collapsed", "copy task"), (c, "spread", "no pattern")):
        im = ax.imshow(heatmaps[key], cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"{key}: {what}, head {heads[key]}", fontsize=9)
        ax.set_xlabel("key position")
        ax.set_ylabel("query position")
    fig.colorbar(im, ax=[b, c], label="attention weight")
    fig.suptitle(title)
    return fig


__all__ = ["plot_diagnostics", "panel_figures", "PANELS", "UPDATE_RATIO_REFERENCE"]
