"""Backprop as an animation: one frame per backward op, for a blog post or a talk.

`animate_backward(loss, "backprop.gif")` replays the backward pass (viz.trace_backward: no
`.grad` changes, before or after `loss.backward()`) and draws one frame per op: the op being
processed in red, the gradient that just arrived at its output shown (red background), the
ops and tensors already finished shaded green. A first frame (the forward graph, before
backward) and a last frame (every gradient computed) frame the steps: len(steps) + 2 frames.
A tensor's gradient appears once it is final (every op that reads the tensor has sent its
share), so no frame shows a partial sum.

Constant geometry: every frame draws the same nodes with the same labels, the final
gradients included; a gradient that has not arrived yet is written in a transparent colour,
and the caption sits in a fixed-size cell. Only colours differ between frames, so Graphviz
lays every frame out identically (checked: the frames must have one size).

Formats, by the file's extension:
    .gif   Pillow (installed with matplotlib), `fps` frames per second, looping
    .svg   one SVG animated with SMIL <animate> elements (no JavaScript): plays inline in a
           browser or an <img> tag in a blog post
    .mp4   ffmpeg (H.264), only where an `ffmpeg` program is on PATH
"""
import copy
import io
import pathlib
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

from PIL import Image

from .graph import (BOX_FILL, DONE_FILL, GRAD, HOT, HOT_FILL, OP_FILL, GraphPlan, draw_graph, esc,
                    legend_table)
from .graphviz_program import run_layout
from .labels import label_of
from .stepper import grads_at, trace_backward

FORMATS = (".gif", ".svg", ".mp4")
HIDDEN = "#ffffff00"                # a gradient that has not arrived yet: drawn, but transparent
CAPTION_PT = 12
SVG_NS, XLINK_NS = "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"


def animate_backward(loss, path, fps=2, collapse=None, rankdir="TB", values="auto", max_elements=64,
                     show_values=True, title=None, max_nodes=300):
    """Write the backward pass of `loss` as an animation to `path` (.gif, .svg or .mp4).
    fps: frames per second. collapse, rankdir, values, max_elements, show_values, max_nodes:
    as in draw_graph. Returns the path written."""
    path = pathlib.Path(path)
    fmt = path.suffix.lower()
    if fmt not in FORMATS:
        raise ValueError(f"animate_backward: unknown extension {path.suffix or '(none)'!r} in {str(path)!r}; "
                         f"use one of {', '.join(FORMATS)}")
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and 0 < fps <= 60):
        raise ValueError(f"animate_backward: fps must be a number in (0, 60], got {fps!r}")
    if fmt == ".mp4" and shutil.which("ffmpeg") is None:
        raise RuntimeError("animate_backward: writing .mp4 needs the ffmpeg program on PATH, and none was "
                           "found; install ffmpeg, or write a .gif or an .svg instead")
    sources = frame_sources(loss, collapse=collapse, rankdir=rankdir, values=values, max_elements=max_elements,
                            show_values=show_values, title=title, max_nodes=max_nodes)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == ".svg":
        path.write_text(animated_svg([run_layout(s, "svg").decode("utf-8") for s in sources], fps), encoding="utf-8")
    else:
        pngs = [run_layout(s, "png") for s in sources]
        (_write_gif if fmt == ".gif" else _write_mp4)(pngs, path, fps)
    return path


# ----------------------------------------------------------------------------- frames
def frame_states(steps):
    """Per frame (len(steps) + 2 of them): the caption and, for ops and tensors (by id), their
    state. Ops: "current" / "done". Tensors: "arrived" (the current op's output: its gradient
    has just arrived there, red), "sent" (its gradient is final: the last op that uses it has
    sent its share), "done" (its own op has run, or a leaf completed earlier: shaded), absent
    (not computed yet). A gradient is shown once it is final, so every frame shows final values."""
    n = len(steps)
    final_at = {id(steps[0].output): 1}      # id(tensor) -> the frame from which its gradient is final
    for i, s in enumerate(steps):
        for p, g in s.parent_grads:
            if g is not None:
                final_at[id(p)] = i + 1     # the last consumer to send decides
    loss, outputs = steps[0].output, {id(x.output) for x in steps}
    frames = [{"caption": f"forward pass done: {label_of(loss)} = {_value(loss)}; backward starts at the loss "
                          f"with dL/d{label_of(loss)} = 1", "ops": {}, "tensors": {}}]
    for i, s in enumerate(steps):
        f = i + 1
        ops = {id(x.op): "done" for x in steps[:i]}
        ops[id(s.op)] = "current"
        ran = {id(x.output) for x in steps[:i]}
        tensors = {k: "done" if k in ran or (k not in outputs and at < f) else "sent"
                   for k, at in final_at.items() if at <= f}
        tensors[id(s.output)] = "arrived"
        frames.append({"caption": f"step {f}/{n}: {s.op.label()} receives dL/d({label_of(s.output)}) and sends "
                                  f"its share on to its {len(s.op.parents)} input{'s' * (len(s.op.parents) != 1)}",
                       "ops": ops, "tensors": tensors})
    frames.append({"caption": f"backward done: {n} ops, every gradient computed",
                   "ops": {id(s.op): "done" for s in steps}, "tensors": {k: "done" for k in final_at}})
    return frames


def _value(t):
    return f"{t.item():.4g}" if t.size == 1 else f"{tuple(t.shape)}"


def frame_sources(loss, collapse=None, rankdir="TB", values="auto", max_elements=64, show_values=True,
                  title=None, max_nodes=300):
    """The DOT source of every frame: one base drawing (final gradients), restyled per frame."""
    steps = trace_backward(loss)
    final = grads_at(steps, len(steps) - 1)
    plan = GraphPlan(loss, collapse)
    base = draw_graph(loss, rankdir=rankdir, collapse=collapse, values=values, max_elements=max_elements,
                      show_values=show_values, max_nodes=max_nodes, legend=False,
                      grad_of=lambda t: final.get(id(t)))
    lines = base.source.splitlines()
    frames = frame_states(steps)
    width = 8 + 0.6 * CAPTION_PT * max(len(f["caption"]) for f in frames)     # points, fits the longest
    title = title or f"backpropagation through {label_of(loss)}: {len(steps)} ops"
    node_of_op = {id(t.op): plan.op_node(k) for k, t in enumerate(plan.order) if t.op is not None}
    node_of_tensor = {id(t): f"t{k}" for k, t in enumerate(plan.order) if plan.visible[k]}
    sources = []
    for f in frames:
        ops, tensors = {}, {}
        for key, state in f["ops"].items():
            node = node_of_op.get(key)
            if node is not None and ops.get(node) != "current":
                ops[node] = state            # a collapsed box: current while any op inside is
        for key, state in f["tensors"].items():
            if key in node_of_tensor:
                tensors[node_of_tensor[key]] = state
        body = [_restyle(line, ops, tensors) for line in lines]
        label = _label(title, f["caption"], width, bool(plan.boxes))
        body.insert(len(body) - 1, f"\tlabel={label} labelloc=t labeljust=l")
        sources.append("\n".join(body) + "\n")
    return sources


NODE_LINE = re.compile(r"^(\s*)((?:t|op|box)\d+) \[(.*)\]$")


def _restyle(line, ops, tensors):
    """One node line of the base DOT drawn in a frame's state."""
    m = NODE_LINE.match(line)
    if not m:
        return line
    indent, node, attrs = m.groups()
    if node.startswith("t"):
        state = tensors.get(node)
        bg = {"arrived": HOT_FILL, "done": DONE_FILL}.get(state, "white")        # "sent": white
        attrs = attrs.replace('BGCOLOR="white"', f'BGCOLOR="{bg}"', 1)
        if state is None:
            attrs = attrs.replace(f'COLOR="{GRAD}"', f'COLOR="{HIDDEN}"')
        return f"{indent}{node} [{attrs}]"
    state = ops.get(node)
    fill = OP_FILL if node.startswith("op") else BOX_FILL
    if state == "current":
        attrs = attrs.replace(f'fillcolor="{fill}"', f'fillcolor="{HOT_FILL}"')
        attrs = re.sub(r'(?<!fill)color="[^"]*"', f'color="{HOT}"', attrs) + " penwidth=3"
    elif state == "done":
        attrs = attrs.replace(f'fillcolor="{fill}"', f'fillcolor="{DONE_FILL}"')
    return f"{indent}{node} [{attrs}]"


def _label(title, caption, width, boxes):
    """The graph label: title, the frame's caption in a fixed-size cell, the legend."""
    legend = legend_table(hot=True, done=True, boxes=boxes)
    return (f'<<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="1">'
            f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="15"><B>{esc(title)}</B></FONT></TD></TR>'
            f'<TR><TD ALIGN="LEFT" FIXEDSIZE="TRUE" WIDTH="{width:.0f}" HEIGHT="{CAPTION_PT + 8}">'
            f'<FONT POINT-SIZE="{CAPTION_PT}" COLOR="{HOT}">{esc(caption)}</FONT></TD></TR>'
            f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="9">{legend}</FONT></TD></TR></TABLE>>')


# ----------------------------------------------------------------------------- writers
def _images(pngs):
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
    sizes = {im.size for im in images}
    if len(sizes) != 1:
        raise RuntimeError(f"animate_backward: frames came out in {len(sizes)} sizes {sorted(sizes)}; "
                           "the layout should be identical in every frame")
    return images


def _write_gif(pngs, path, fps):
    images = _images(pngs)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                   disposal=1)


def _write_mp4(pngs, path, fps):
    _images(pngs)
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(pngs):
            pathlib.Path(tmp, f"frame{i:04d}.png").write_bytes(p)
        cmd = [shutil.which("ffmpeg"), "-y", "-loglevel", "error", "-framerate", str(fps),
               "-i", str(pathlib.Path(tmp, "frame%04d.png")),
               "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2:color=white", "-pix_fmt", "yuv420p", "-c:v", "libx264",
               str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"animate_backward: ffmpeg failed: {done.stderr.strip()[:300]}")


ANIMATED = ("fill", "stroke", "stroke-width", "fill-opacity", "stroke-opacity")
DEFAULTS = {"fill": "black", "stroke": "none", "stroke-width": "1", "fill-opacity": "1", "stroke-opacity": "1"}


def animated_svg(frames, fps):
    """One SVG from the SVGs of all frames (same elements, same geometry): every attribute that
    changes between frames gets a discrete SMIL <animate>, and a text that changes (the caption)
    becomes one copy per frame, each shown only in its frame. Loops forever."""
    ET.register_namespace("", SVG_NS)
    ET.register_namespace("xlink", XLINK_NS)
    roots = [ET.fromstring(re.sub(r"<!DOCTYPE[^>]*>", "", f)) for f in frames]
    n = len(roots)
    times = ";".join(f"{i / n:.6f}" for i in range(n))
    timing = {"dur": f"{n / fps:g}s", "repeatCount": "indefinite", "calcMode": "discrete", "keyTimes": times}
    walks = [list(r.iter()) for r in roots]
    if len({len(w) for w in walks}) != 1 or any([e.tag for e in w] != [e.tag for e in walks[0]] for w in walks):
        raise RuntimeError("animate_backward: the frames' SVGs differ in structure; cannot animate them")
    parents = {child: parent for parent in roots[0].iter() for child in parent}
    for elems in zip(*walks):
        first = elems[0]
        if first.tag == f"{{{SVG_NS}}}title":
            continue
        texts = [e.text for e in elems]
        if len(set(texts)) > 1:                 # changing text: one copy per frame
            parent = parents[first]
            at = list(parent).index(first)
            parent.remove(first)
            for i, e in enumerate(elems):
                dup = copy.deepcopy(e)
                dup.set("opacity", "1" if i == 0 else "0")
                ET.SubElement(dup, f"{{{SVG_NS}}}animate", attributeName="opacity",
                              values=";".join("1" if j == i else "0" for j in range(n)), **timing)
                parent.insert(at + i, dup)
            continue
        for attr in ANIMATED:
            vals = [e.get(attr, DEFAULTS[attr]) for e in elems]
            if len(set(vals)) > 1:
                first.set(attr, vals[0])
                ET.SubElement(first, f"{{{SVG_NS}}}animate", attributeName=attr, values=";".join(vals), **timing)
    return '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + ET.tostring(roots[0], encoding="unicode")


__all__ = ["animate_backward", "animated_svg", "frame_sources", "frame_states"]
