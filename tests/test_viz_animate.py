"""viz.animate_backward: one GIF frame per backward step plus a first and a last, all of one
size; the SVG animates in headless Chromium (two screenshots differ); before or after
loss.backward(); MP4 without ffmpeg is a clear error; `tx animate`."""
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from browser import chromium
from viz import animate_backward, examples, graphviz_program, trace_backward
from viz.animate import frame_sources, frame_states

pytestmark = pytest.mark.skipif(graphviz_program.find_program() is None, reason="no Graphviz")
Image = pytest.importorskip("PIL.Image")


def gif_frames(path):
    im = Image.open(path)
    frames = []
    for i in range(im.n_frames):
        im.seek(i)
        frames.append(np.asarray(im.convert("RGB")))
    return frames


@pytest.mark.parametrize("after_backward", [False, True])
def test_gif_has_a_frame_per_step_plus_two(tmp_path, after_backward):
    loss = examples.build("neuron", backward=after_backward)
    grads_before = {id(t): None if t.grad is None else t.grad.copy() for t in trace_backward(loss)[-1].op.parents}
    path = animate_backward(loss, tmp_path / "bp.gif", fps=4)
    frames = gif_frames(path)
    assert len(frames) == len(trace_backward(loss)) + 2
    assert len({f.shape for f in frames}) == 1
    assert all(not np.array_equal(a, b) for a, b in zip(frames, frames[1:]))     # each frame shows something new
    for p in trace_backward(loss)[-1].op.parents:                                 # the replay left .grad alone
        before = grads_before[id(p)]
        assert (p.grad is None) if before is None else np.array_equal(p.grad, before)


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs the real dot (-Tplain)")
def test_every_frame_has_the_same_layout():
    """Only colours change between frames: dot places every node at the same spot."""
    sources = frame_sources(examples.build("mlp", backward=False))
    plains = [subprocess.run(["dot", "-Tplain"], input=s, capture_output=True, text=True, check=True).stdout
              for s in (sources[0], sources[len(sources) // 2], sources[-1])]
    nodes = [[line.split()[:6] for line in p.splitlines() if line.startswith(("node", "graph"))] for p in plains]
    assert nodes[0] == nodes[1] == nodes[2]


def test_frame_states_walk_the_steps():
    steps = trace_backward(examples.build("neuron", backward=False))
    frames = frame_states(steps)
    assert len(frames) == len(steps) + 2
    assert not frames[0]["ops"] and not frames[0]["tensors"]
    for i, s in enumerate(steps):
        f = frames[i + 1]
        assert f["ops"][id(s.op)] == "current" and f["tensors"][id(s.output)] == "arrived"
        assert all(f["ops"][id(x.op)] == "done" for x in steps[:i])
    assert set(frames[-1]["ops"].values()) == {"done"}


def test_a_gradient_appears_once_final():
    """x is read by two ops: its gradient is shown only from the step of the second one."""
    from tinygrad_tx import Tensor
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True, name="x")
    loss = ((x * 3.0).sum() + (x * x.exp()).sum())
    steps = trace_backward(loss)
    frames = frame_states(steps)
    senders = [i for i, s in enumerate(steps) if any(p is x and g is not None for p, g in s.parent_grads)]
    assert len(senders) >= 2
    for f, frame in enumerate(frames[1:-1]):
        assert (id(x) in frame["tensors"]) == (f >= senders[-1])
    assert frames[senders[-1] + 1]["tensors"][id(x)] == "sent"
    assert frames[senders[-1] + 2]["tensors"][id(x)] == "done"


def test_svg_is_smil_without_script(tmp_path):
    path = animate_backward(examples.build("neuron"), tmp_path / "bp.svg", fps=2)
    text = path.read_text()
    assert "<script" not in text and "<animate" in text and 'repeatCount="indefinite"' in text
    steps = len(trace_backward(examples.build("neuron")))
    assert f'dur="{(steps + 2) / 2:g}s"' in text


def test_mp4_needs_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs the ffmpeg program"):
        animate_backward(examples.build("neuron"), tmp_path / "bp.mp4")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="no ffmpeg")
def test_mp4(tmp_path):
    path = animate_backward(examples.build("neuron"), tmp_path / "bp.mp4")
    assert path.stat().st_size > 1000


def test_bad_arguments(tmp_path):
    loss = examples.build("neuron")
    with pytest.raises(ValueError, match="unknown extension"):
        animate_backward(loss, tmp_path / "bp.png")
    with pytest.raises(ValueError, match="fps"):
        animate_backward(loss, tmp_path / "bp.gif", fps=0)


def test_cli_animate(tmp_path):
    out = tmp_path / "backprop.gif"
    result = CliRunner().invoke(cli.main, ["animate", "neuron", "--out", str(out), "--fps", "3"])
    assert result.exit_code == 0, result.output
    assert len(gif_frames(out)) == len(trace_backward(examples.build("neuron"))) + 2
    bad = CliRunner().invoke(cli.main, ["animate", "neuron", "--out", str(tmp_path / "x.png")])
    assert bad.exit_code == 2 and ".gif, .svg or .mp4" in bad.output


# ----------------------------------------------------------------------------- headless Chromium
@pytest.fixture(scope="module")
def browser():
    yield from chromium(window="900,1400")


def test_svg_animates_in_chromium(browser, tmp_path):
    path = animate_backward(examples.build("neuron", backward=False), tmp_path / "bp.svg", fps=4)
    browser.get(path.as_uri())
    time.sleep(0.1)
    first = browser.get_screenshot_as_png()
    time.sleep(0.8)                                   # a few frames later (4 frames a second)
    later = browser.get_screenshot_as_png()
    assert first != later
    svg = path.read_text()
    assert re.search(r"<svg[^>]*width=", svg)
