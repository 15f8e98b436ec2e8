"""viz: drawing the engine's computation graphs and gradients.

Reads only public Tensor attributes (op, parents, op_name, name, scope, data, grad) and the
engine's `backward_steps` generator; imports tinygrad_tx and transformer, never the other way
round.

    draw_graph(loss)              a graphviz.Digraph (shows itself in Jupyter)
    render(loss, "g.svg")         write .svg / .png / .pdf / .dot
    trace_backward(loss)          run backward one op at a time, recording each step
    explore(loss, "bp.html")      a self-contained page to step through the backward pass
    explain_grad(x, loss)         why x's gradient is zero (or tiny, or None): cause, entries, path
    animate_backward(loss, "bp.gif")  the backward pass as a GIF, an animated SVG or an MP4
    compare_backward(loss)        every gradient against central differences (or composed / torch)
"""
from .graph import draw_anomaly, draw_graph, graph_nodes
from .render import render, svg_text
from .stepper import format_step, frame_graph, trace_backward
from .explorer import explore
from .explain import CAUSES, Explanation, explain_grad
from .animate import animate_backward
from .compare import BackwardComparison, compare_backward
from .plots import (attention_heatmaps, attention_grid, score_gradient_heatmap, attention_score_grads,
                    positional_encoding_heatmap, layernorm_backward_terms, layernorm_terms_figure,
                    softmax_jacobian, softmax_jacobian_figure, loss_curves, scaling_figure, scaling_stats, save)
from . import examples
