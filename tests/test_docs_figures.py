"""docs/backprop.md and its figures: every figure the docs (and the README) link is registered in
viz.figures.FIGURES and built by `tx figures`; the build is deterministic; the numbers the text
quotes come from the code; and every ```python block of the walkthrough runs as shown.

The full build (two tiny models are trained) runs once per test process, in a module-scoped
fixture, and the tests that need it are marked slow."""
import contextlib
import html
import io
import pathlib
import re

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from tinygrad_tx import backend
from transformer import causal_mask
from viz import figures as FIG
from viz.plots import scaling_stats

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
WALKTHROUGH = DOCS / "backprop.md"
# a link into the figures folder: figures/x from docs/*.md, docs/figures/x from the README;
# markdown ](...) or an HTML src="..."
LINK = re.compile(r"""(?:\]\(|src=["'])(?:\./)?(?:docs/)?figures/([^)"'#\s]+)""")
IMAGE = re.compile(r"""(?:!\[[^\]]*\]\(|<img[^>]*src=["'])(?:\./)?(?:docs/)?figures/([^)"'#\s]+)""")
FAST = ["neuron.svg", "reuse.svg", "attention.svg", "scaling.png", "score_grads.png"]


def linked(pattern):
    """{figure name: [doc files linking it]} over docs/*.md and the README."""
    found = {}
    for md in sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]:
        if not md.is_file():
            continue
        for name in pattern.findall(md.read_text(encoding="utf-8")):
            found.setdefault(name, []).append(md.name)
    return found


def sections(text):
    """{"1. A scalar expression as a graph": its text, ...} for every `## ` heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def invoke(*args):
    return CliRunner().invoke(cli.main, list(args))


# ----------------------------------------------------------------------------- registry vs docs
def test_every_figure_linked_from_docs_is_registered():
    unknown = {name: files for name, files in linked(LINK).items() if name not in FIG.FIGURES}
    assert not unknown, f"docs link figures that viz.figures.FIGURES does not build: {unknown}"
    images = linked(IMAGE)
    assert "backprop.md" in images.get("attention.svg", []), "the link pattern misses ![..](figures/x)"


def test_every_registered_figure_appears_in_its_section():
    """Each FIGURES entry names a `## ` section of backprop.md, and is linked inside it."""
    secs = sections(WALKTHROUGH.read_text(encoding="utf-8"))
    for name, (section, description, builder) in FIG.FIGURES.items():
        assert callable(builder) and description
        assert section in secs, f"{name}: no section '## {section}' in {WALKTHROUGH.name}"
        assert f"figures/{name})" in secs[section], f"{name} is not linked in section {section!r}"


def test_committed_figures_exist_for_every_doc_link():
    missing = sorted(name for name in linked(LINK) if not (DOCS / "figures" / name).is_file())
    assert not missing, f"docs/figures lacks {missing}: run `tx figures --out docs/figures`"


def test_make_figures_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="unknown figure 'nope.svg'; valid names: neuron.svg"):
        FIG.make_figures(tmp_path, ["nope.svg"], progress=False)


# ----------------------------------------------------------------------------- determinism
def test_fast_figures_are_deterministic(tmp_path):
    a = FIG.make_figures(tmp_path / "a", FAST, progress=False)
    b = FIG.make_figures(tmp_path / "b", FAST, progress=False)
    assert [p.name for p in a] == FAST
    for pa, pb in zip(a, b):
        if pa.suffix == ".svg":
            assert pa.read_text(encoding="utf-8") == pb.read_text(encoding="utf-8"), pa.name
        else:
            assert pa.read_bytes() == pb.read_bytes(), pa.name       # PNG byte-stable: no version stamp
            assert b"Software" not in pa.read_bytes()
    assert scaling_stats() == scaling_stats()                         # the numbers behind scaling.png


def test_make_figures_gives_back_the_engine_random_state(tmp_path):
    backend.manual_seed(123)
    before = backend.get_rng_state()
    FIG.make_figures(tmp_path, ["gpt.svg", "multihead.svg"], progress=False)
    assert backend.get_rng_state() == before


def test_reuse_figure_draws_one_arrow_per_use(tmp_path):
    svg = FIG.make_figures(tmp_path, ["reuse.svg"], progress=False)[0].read_text(encoding="utf-8")
    edges = re.findall(r"<title>(\w+)&#45;&gt;(\w+)</title>", svg)
    assert max(edges.count(e) for e in set(edges)) == 2               # a -> Add twice, b -> Add twice
    grads = re.findall(r'fill="#c0392b">([^<]*)</text>', svg)                # text in the gradient colour
    assert "4" in grads and "2" in grads


def test_matmul_and_broadcast_figures_show_the_captions_numbers(tmp_path):
    """Section 2's captions: W's gradient (0, 0) is 1 * 1 + 0 * 0 = 1; b's gradient sums the
    upstream rows [1, 2, 3] + [10, 20, 30] = [11, 22, 33]."""
    mm, bc = FIG.make_figures(tmp_path, ["matmul.svg", "broadcast.svg"], progress=False)
    grads = re.findall(r'fill="#c0392b">([^<]*)</text>', bc.read_text(encoding="utf-8"))
    assert ["11", "22", "33"] == [g for g in grads if g in ("11", "22", "33")]
    grads = [html.unescape(g) for g in re.findall(r'fill="#c0392b">([^<]*)</text>', mm.read_text(encoding="utf-8"))]
    x_grad, w_grad = grads[2:8], grads[9:15]                           # after each box's "grad" label
    assert x_grad == ["1", "0.5", "0", "-2", "4", "2"]                 # dL/dY W^T
    assert w_grad == ["1", "0", "2", "2", "0", "-2"]                   # X^T dL/dY: (0, 0) = 1 * 1 + 0 * 0


# ----------------------------------------------------------------------------- numbers in the text
def test_score_gradients_are_exactly_zero_where_masked():
    res = FIG.score_grads_data()
    mask = causal_mask(len(FIG.SCORE_TOKENS))
    assert np.all(res.grad[mask] == 0.0) and np.all(res.weights[mask] == 0.0)
    np.testing.assert_allclose(res.grad.sum(axis=-1), 0.0, atol=1e-12)   # softmax Jacobian rows sum to 0
    assert np.all(res.grad[0] == 0.0)                                     # one visible key: weight 1, no gradient


def test_scaling_table_matches_scaling_stats():
    """The table in section 5 is scaling_stats() rounded as printed: score spreads, softmax
    entropies and Jacobian sizes sum |J|, unscaled and scaled."""
    rows = re.findall(r"^\|\s*(\d+)\s*" + r"\|\s*([\d.]+)\s*" * 6 + r"\|$",
                      WALKTHROUGH.read_text(encoding="utf-8"), flags=re.M)
    stats = scaling_stats()
    assert [int(r[0]) for r in rows] == list(stats)
    keys = ("unscaled_std", "scaled_std", "unscaled_entropy", "scaled_entropy", "unscaled_jacobian", "scaled_jacobian")
    for d, *shown_values in rows:
        s = stats[int(d)]
        for shown, key in zip(shown_values, keys):
            decimals = len(shown.split(".")[1])
            assert float(shown) == round(s[key], decimals), f"d_k={d} {key}: table {shown}, computed {s[key]}"


def test_scaling_jacobian_size_is_sum_of_abs_jacobian():
    """scaling_stats' closed form 2 (1 - sum p^2) is sum_ij |J_ij| of the softmax Jacobian."""
    from viz.plots import softmax_jacobian
    rng = np.random.default_rng(1)
    for z in rng.normal(size=(5, 8)) * 4:
        p = np.exp(z - z.max())
        p /= p.sum()
        assert np.isclose(np.abs(softmax_jacobian(z)).sum(), 2 * (1 - (p ** 2).sum()), rtol=0, atol=1e-12)
    one = scaling_stats(d_ks=(4,), n=50)[4]
    assert 0 < one["unscaled_jacobian"] < one["scaled_jacobian"] < 2 * (1 - 1 / 8)


# ----------------------------------------------------------------------------- the snippets
def python_blocks(text):
    """[(section heading, code)] for every ```python block of a markdown text, in order."""
    blocks, heading = [], ""
    for part in re.split(r"^(## .+)$", text, flags=re.M):
        if part.startswith("## "):
            heading = part[3:].strip()
            continue
        blocks += [(heading, code) for code in re.findall(r"^```python\n(.*?)^```", part, flags=re.S | re.M)]
    return blocks


def shown_outputs(code):
    """The outputs a block claims: the text of every comment in it (after `# `, stripped)."""
    return [line.split("#", 1)[1].strip() for line in code.splitlines() if "#" in line]


def unclaimed(printed, code):
    """Printed lines that no comment of the block shows: each printed line must begin some
    comment (`print(a.grad)  # 4.0 2.0`, or `# [[0 0 0 1 1]` under a print of an array)."""
    comments = shown_outputs(code)
    return [line for line in (raw.strip() for raw in printed.splitlines())
            if line and not any(c.startswith(line) for c in comments)]


def test_unclaimed_output_is_caught():
    code = "print(a.grad)      # 4.0 2.0\nprint(x)\n# [[0 0 0 1 1]\n#  [0 0 0 0 0]]"
    assert unclaimed("4.0 2.0\n[[0 0 0 1 1]\n [0 0 0 0 0]]\n", code) == []
    assert unclaimed("4.0 3.0\n", code) == ["4.0 3.0"]
    assert unclaimed("False\n", "print(ok)   # True") == ["False"]


def test_backprop_md_snippets_run(tmp_path, monkeypatch):
    """Every ```python block of backprop.md, in order, in one namespace, in an empty folder;
    each block prints only what its comments show (the derivation checker's table excepted:
    it prints a report), and writes its files into the walkthrough's scratch folder."""
    blocks = python_blocks(WALKTHROUGH.read_text(encoding="utf-8"))
    assert len(blocks) >= 10
    monkeypatch.chdir(tmp_path)
    namespace, everything = {"__name__": "backprop_md"}, []
    for i, (heading, block) in enumerate(blocks):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"docs/backprop.md python block {i + 1} ({heading})", "exec"), namespace)
        everything.append(out.getvalue())
        if not heading.endswith("Check your own derivation"):
            assert unclaimed(out.getvalue(), block) == [], f"block {i + 1} ({heading}) printed:\n{out.getvalue()}"
    printed = "".join(everything)
    assert "True" in printed and "DIFFERENT" in printed               # the derivation checker's wrong case
    scratch = namespace["scratch"]                                    # the walkthrough's scratch folder
    assert (scratch / "my_neuron.svg").is_file() and (scratch / "my_gpt.svg").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == []           # nothing written to the working folder


# ----------------------------------------------------------------------------- the CLI
def test_cli_figures_only_writes_those_files_and_the_time(tmp_path):
    result = invoke("figures", "--out", str(tmp_path), "--only", "neuron.svg", "--only", "scaling.png",
                    "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["neuron.svg", "scaling.png"]
    lines = result.output.strip().splitlines()
    assert lines[:2] == [f"wrote {tmp_path / 'neuron.svg'}", f"wrote {tmp_path / 'scaling.png'}"]
    assert re.fullmatch(r"2 files in \d+\.\d s", lines[-1])


@pytest.mark.parametrize("args, status, message", [
    (["--only", "neuron.svg"], 2, "Error: --out DIR is required"),
    (["--out", "{tmp}", "--only", "atention.svg"], 2, "Error: --only: unknown figure 'atention.svg'; did you mean attention.svg"),
    (["--out", "{tmp}/file/sub"], 1, "Error: cannot write to output folder"),
])
def test_cli_figures_bad_input_is_one_line(tmp_path, args, status, message):
    (tmp_path / "file").write_text("not a folder")
    result = invoke("figures", *[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == status, result.output
    assert result.output.startswith(message) and len(result.output.strip().splitlines()) == 1, result.output


# ----------------------------------------------------------------------------- the full build (slow)
@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """`tx figures` into a fresh folder, once: (folder, CLI output)."""
    out = tmp_path_factory.mktemp("figures")
    result = invoke("figures", "--out", str(out), "--no-progress")
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
def test_tx_figures_writes_every_registered_figure(built):
    out, output = built
    assert sorted(p.name for p in out.iterdir()) == sorted(FIG.FIGURES)
    for name in FIG.FIGURES:
        data = (out / name).read_bytes()
        assert f"wrote {out / name}" in output
        if name.endswith(".svg"):
            assert b"<svg" in data[:2000] and b"</svg>" in data[-200:], name
        elif name.endswith(".png"):
            assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        else:
            assert len(data) > 100, name
    assert re.search(rf"^{len(FIG.FIGURES)} files in \d+\.\d s$", output, flags=re.M), output


@pytest.mark.slow
def test_every_image_in_the_docs_is_produced(built):
    out, _ = built
    missing = sorted(name for name in linked(IMAGE) if not (out / name).is_file())
    assert not missing, missing


@pytest.mark.slow
def test_leakage_and_cross_attention_show_what_the_text_says(built):
    """The trained models behind leakage_curves.png and cross_attention.png (cached by the
    build): without the mask the parallel loss collapses while the generation-style loss is
    much worse; the reverse model decodes the held-out string and some last-layer head
    attends along the anti-diagonal."""
    runs = FIG.leakage_runs(0)
    masked, leaky = runs[True], runs[False]
    assert leaky["rows"][-1]["train_loss"] < 0.5 * masked["rows"][-1]["train_loss"]
    assert leaky["generation_loss"] > masked["generation_loss"] + 1.0
    samples = (built[0] / "leakage_samples.txt").read_text(encoding="utf-8")
    assert masked["sample"] in samples and leaky["sample"] in samples
    assert masked["sampled"] in samples and leaky["sampled"] in samples
    # a causal model scores the same in parallel and from prefixes, by construction
    assert abs(masked["parallel_loss"] - masked["generation_loss"]) < 1e-5
    assert leaky["generation_loss"] > 10 * leaky["parallel_loss"]
    # the numbers section 9 quotes
    text = sections(WALKTHROUGH.read_text(encoding="utf-8"))["9. Parallel training, autoregressive generation, leakage"]
    quoted = (f"train loss of {masked['rows'][-1]['train_loss']:.2f}",
              f"scores {masked['parallel_loss']:.2f} in one\nparallel pass and {masked['generation_loss']:.2f}",
              f"reaches {leaky['rows'][-1]['train_loss']:.2f} when trained, and {leaky['parallel_loss']:.2f} in parallel",
              f"but {leaky['generation_loss']:.2f} when scored")
    missing = [q for q in quoted if q not in text]
    assert not missing, missing

    weights, src, tgt_in, pred, result = FIG.cross_attention_data(0)
    n = len(tgt_in) - 1                                               # source length
    assert list(pred[:n]) == list(tgt_in[1:])                         # greedy output = the reversal
    last = weights[-1][:, :n, :]                                      # (H, n, S): queries that output a digit
    anti = np.arange(n)[::-1]
    assert any(np.array_equal(head.argmax(axis=-1), anti) for head in last)


def test_make_figures_builds_on_one_thread_and_restores_the_count(tmp_path, monkeypatch):
    """The trained figures must not depend on the machine's load (the default thread count
    follows it, and a sum over more threads rounds differently)."""
    from tinygrad_tx import threads
    from viz import figures
    seen = []

    def builder(out, seed):
        seen.append(threads.num_threads())
        return out / "probe.txt"
    monkeypatch.setitem(figures.FIGURES, "probe.txt", ("test", "probe", builder))
    threads.set_threads(2)
    try:
        figures.make_figures(tmp_path, names=["probe.txt"], progress=False)
        assert seen == [1] and threads.num_threads() == 2
    finally:
        threads.set_threads(None)
