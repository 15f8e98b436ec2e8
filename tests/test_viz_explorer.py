"""viz.explorer: the page is self-contained, carries the SVG and the JSON record, escapes user
strings; and in headless Chromium its Prev/Next stepping, highlighting, gradient view,
heatmaps and "not computed yet" behave (skipped where Chromium or selenium is missing)."""
import html
import json
import os
import re
import shutil
import tempfile

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from tinygrad_tx import Tensor, scope
from viz import explore, graph_nodes, graphviz_program, trace_backward

pytestmark = pytest.mark.skipif(graphviz_program.find_program() is None,
                                reason="no Graphviz layout program (dot or graphviz-pure)")

XSS = '<img src=x onerror="window.__xss=1">'
SCRIPT = "</script><script>window.__xss=2</script><!--"


def model(seed=0, names=("x", "W")):
    """loss = sum(softmax(x W) * v) + mean(W^2): matrices for heatmaps, a reused W."""
    rng = np.random.default_rng(seed)
    x = Tensor(rng.normal(size=(3, 4)), name=names[0])                       # (3, 4) data
    W = Tensor(rng.normal(size=(4, 3)), requires_grad=True, name=names[1])   # (4, 3)
    v = Tensor([[1.0, -2.0, 0.5]], name="v")
    with scope("attn"):
        p = (x @ W).softmax(axis=-1)                                         # (3, 3)
    loss = (p * v).sum() + (W * W).mean()
    loss.name = "loss"
    return loss


def page_json(text):
    m = re.search(r'<script type="application/json" id="viz-data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


def test_page_is_self_contained_with_svg_and_json(tmp_path):
    path = explore(model(), tmp_path / "bp.html", title="my <b>title</b>").path
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert re.findall(r"<script\b[^>]*>", text) == ['<script type="application/json" id="viz-data">', "<script>"]
    assert "<svg" in text and "<?xml" not in text
    for element in ("next", "prev", "step-index", "rule", "node-detail", "grad-view"):
        assert f'id="{element}"' in text
    assert "my &lt;b&gt;title&lt;/b&gt;" in text
    data = page_json(text)
    steps = trace_backward(model())
    assert len(data["steps"]) == len(steps)
    order = graph_nodes(model())
    assert sum(1 for n in data["nodes"].values() if n["kind"] == "tensor") == len(order)
    assert sum(1 for n in data["nodes"].values() if n["kind"] == "op") == sum(t.op is not None for t in order)
    for d, s in zip(data["steps"], steps):
        assert d["label"] == s.label and d["rule"] == s.rule
        np.testing.assert_allclose(np.reshape(d["grad_out"]["flat"], s.grad_out.shape), s.grad_out, rtol=1e-5)
    assert re.search(r"<title>op\d+</title>", text) and "<title>t0</title>" in text


def test_strings_are_escaped_in_html_and_json(tmp_path):
    path = explore(model(names=(XSS, SCRIPT)), tmp_path / "bp.html", title=SCRIPT).path
    text = path.read_text(encoding="utf-8")
    assert len(re.findall(r"<script", text)) == 2                 # no injected script element
    assert "<img" not in text and "<!--" not in text
    blob = re.search(r'id="viz-data">(.*?)</script>', text, re.S).group(1)
    assert "</" not in blob and "<" not in blob
    names = {n.get("name") for n in page_json(text)["nodes"].values()}
    assert XSS in names and SCRIPT in names                         # intact once parsed
    assert html.escape(XSS) in text                                 # the SVG label, as text


def test_big_arrays_become_statistics(tmp_path):
    x = Tensor(np.ones((70, 70)), requires_grad=True, name="big")
    data = page_json(explore((x * 2.0).sum(), tmp_path / "b.html").path.read_text())
    big = next(n for n in data["nodes"].values() if n.get("name") == "big")
    assert "flat" not in big["value"] and big["value"]["stats"]["mean"] == 1.0


def tiny(seed=0, backward=True):
    """a tiny preset"""
    loss = model(seed)
    if backward:
        loss.backward()
    return loss


def test_cli_explore(tmp_path, monkeypatch):
    monkeypatch.setattr(cli.viz_examples, "PRESETS", {"tiny": tiny}, raising=False)
    monkeypatch.setattr(cli.viz_examples, "DEFAULT_COLLAPSE", {"tiny": 1}, raising=False)
    r = CliRunner().invoke(cli.main, ["explore", "tiny", "--out", str(tmp_path / "t.html")])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "t.html").read_text()
    assert "tiny: a tiny preset" in text and "box3d" not in text and "<title>box0</title>" in text
    r = CliRunner().invoke(cli.main, ["explore", "tiny", "--out", str(tmp_path / "t.txt")])
    assert r.exit_code == 2 and "end the name with .html" in r.output
    r = CliRunner().invoke(cli.main, ["explore", "nope"])
    assert r.exit_code == 2 and "valid names: tiny" in r.output and "Traceback" not in r.output


# ----------------------------------------------------------------------------- headless Chromium
CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("chromium / chromedriver not installed")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1400,900"):
        opts.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="viz-chrome-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.binary_location = CHROMIUM
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    except Exception as e:                      # a broken browser install is not our failure
        pytest.skip(f"chromium did not start: {e}")
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def by_id(driver, name):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.ID, name)


def svg_node(driver, node_id):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.XPATH, f"//*[local-name()='g'][contains(@class,'node')]"
                                         f"[*[local-name()='title' and text()='{node_id}']]")


def highlighted(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#graph g.node.current'))"
        ".map(function (g) { return g.querySelector('title').textContent; })")


def test_stepping_highlights_the_op_and_shows_its_gradient(browser, tmp_path):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.common.action_chains import ActionChains
    path = explore(model(), tmp_path / "bp.html").path
    ref = model()
    steps = trace_backward(ref)
    k_of = {id(t): k for k, t in enumerate(graph_nodes(ref))}
    browser.get(path.as_uri())
    assert by_id(browser, "step-index").get_attribute("data-step") == "0"
    assert highlighted(browser) == [f"op{k_of[id(steps[0].output)]}"]
    assert by_id(browser, "prev").get_attribute("disabled")
    n = 4
    for _ in range(n - 1):
        by_id(browser, "next").click()
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    assert by_id(browser, "step-index").get_attribute("data-step") == str(n)
    assert by_id(browser, "step-index").text == str(n + 1)
    step = steps[n]
    assert highlighted(browser) == [f"op{k_of[id(step.output)]}"]
    assert by_id(browser, "rule").text.strip() == step.rule.strip()
    assert by_id(browser, "grad-view").get_attribute("data-tensor") == f"t{k_of[id(step.output)]}"
    cells = by_id(browser, "grad-view").find_elements("css selector", "td.num")
    shown = np.array([float(c.text) for c in cells])
    np.testing.assert_allclose(shown, step.grad_out.reshape(-1), rtol=2e-3, atol=1e-6)
    exact = np.array([float(c.get_attribute("data-v")) for c in cells])
    np.testing.assert_allclose(exact, step.grad_out.reshape(-1), rtol=1e-5)
    done = browser.execute_script("return document.querySelectorAll('#graph g.node.done').length")
    assert done == n
    ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
    assert by_id(browser, "step-index").get_attribute("data-step") == str(n - 1)


def test_clicking_nodes_shows_values_heatmaps_and_not_computed_yet(browser, tmp_path):
    path = explore(model(), tmp_path / "bp.html").path
    ref = model()
    order = graph_nodes(ref)
    steps = trace_backward(ref)
    ref.backward()                                      # the replay left .grad alone: fill it
    W = next(k for k, t in enumerate(order) if t.name == "W")
    browser.get(path.as_uri())
    svg_node(browser, f"t{W}").click()                  # step 0: W's gradient has not arrived
    detail = by_id(browser, "node-detail")
    assert "W" in detail.text and "not computed yet" in detail.text
    cells = detail.find_elements("css selector", "table.heatmap td")
    assert len(cells) == 12                              # W's values: a (4, 3) heatmap
    assert all(c.value_of_css_property("background-color") not in ("", "rgba(0, 0, 0, 0)") for c in cells)
    np.testing.assert_allclose([float(c.get_attribute("data-v")) for c in cells], order[W].numpy().reshape(-1), rtol=1e-5)
    for _ in range(len(steps) - 1):
        by_id(browser, "next").click()
    detail = by_id(browser, "node-detail")                # still selected, now with its gradient
    assert "not computed yet" not in detail.text
    tables = detail.find_elements("css selector", "table.heatmap")
    assert len(tables) == 2
    grad = [float(c.get_attribute("data-v")) for c in tables[1].find_elements("css selector", "td")]
    np.testing.assert_allclose(grad, order[W].grad.reshape(-1), rtol=1e-5)
    op = next(k for k, t in enumerate(order) if t.op is not None and t.op.name == "MatMul")
    svg_node(browser, f"op{op}").click()
    assert "dL/dA = dL/dY @ B^T" in by_id(browser, "node-detail").text


def test_hostile_names_do_not_execute(browser, tmp_path):
    path = explore(model(names=(XSS, SCRIPT)), tmp_path / "bp.html", title=XSS).path
    browser.get(path.as_uri())
    for node in ("t0", "t1"):
        svg_node(browser, node).click()
    for _ in range(6):
        by_id(browser, "next").click()
    assert browser.execute_script("return window.__xss === undefined")
    assert browser.execute_script("return document.querySelectorAll('img').length") == 0
    svg_node(browser, "t0").click()
    assert XSS in by_id(browser, "node-detail").text
    assert browser.title == XSS
