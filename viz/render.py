"""Write a drawn graph to a file: .svg, .png, .pdf (laid out by Graphviz) or .dot (the source).

The layout program is the real `dot` when installed, else graphviz-pure (SVG and PNG only);
see `graphviz_program`. With neither, the DOT source is written next to the requested file
and GraphvizNotFoundError says how to install Graphviz.
"""
from pathlib import Path

import graphviz

from .graph import draw_graph
from .graphviz_program import GraphvizNotFoundError, run_layout, svg_of_source

FORMATS = ("svg", "png", "pdf", "dot")


def render(tensor_or_digraph, path, **draw_kwargs):
    """Draw a tensor's graph (draw_kwargs go to draw_graph) or take a ready Digraph, and write it
    to `path`, the format chosen by the extension. Returns the written path."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"render: unknown extension {path.suffix or '(none)'!r} in {str(path)!r}; "
                         f"use one of {', '.join('.' + f for f in FORMATS)}")
    if isinstance(tensor_or_digraph, graphviz.Digraph):
        if draw_kwargs:
            raise TypeError(f"render: drawing options {sorted(draw_kwargs)} only apply to a tensor, not a ready Digraph")
        dot = tensor_or_digraph
    else:
        dot = draw_graph(tensor_or_digraph, **draw_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dot":
        path.write_text(dot.source, encoding="utf-8")
        return path
    try:
        data = run_layout(dot.source, fmt)
    except GraphvizNotFoundError as e:
        dot_path = path.with_suffix(".dot")
        dot_path.write_text(dot.source, encoding="utf-8")
        raise GraphvizNotFoundError(f"{e}. Wrote the graph source to {dot_path} instead; once Graphviz is "
                                    f"installed: dot -T{fmt} {dot_path} -o {path}", dot_path=dot_path) from None
    path.write_bytes(data)
    return path


def svg_text(digraph):
    """The SVG of a Digraph (or of a tensor's graph) as a string, for embedding in HTML."""
    dot = digraph if isinstance(digraph, graphviz.Digraph) else draw_graph(digraph)
    return svg_of_source(dot.source)
