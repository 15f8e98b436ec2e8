"""viz.explorer: the page is self-contained, carries the SVG and the JSON record, escapes user
strings; and in headless Chromium its Prev/Next stepping, highlighting, gradient view,
heatmaps and "not computed yet" behave (skipped where Chromium or selenium is missing)."""
import html
import json
import os
import re

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from browser import chromium
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
    monkeypatch.setattr(cli.viz_examples, "DRAW_DEFAULTS", {"tiny": {"collapse": 1}})
    r = CliRunner().invoke(cli.main, ["explore", "tiny", "--out", str(tmp_path / "t.html")])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "t.html").read_text()
    assert "tiny: a tiny preset" in text and "box3d" not in text and "<title>box0</title>" in text
    r = CliRunner().invoke(cli.main, ["explore", "tiny", "--out", str(tmp_path / "t.txt")])
    assert r.exit_code == 2 and "end the name with .html" in r.output
    r = CliRunner().invoke(cli.main, ["explore", "nope"])
    assert r.exit_code == 2 and "valid names: tiny" in r.output and "Traceback" not in r.output


def grads(loss):
    """Every tensor's .grad in the graph: the array object and its bytes (None where none)."""
    return [(t.grad, None if t.grad is None else t.grad.tobytes()) for t in graph_nodes(loss)]


@pytest.mark.parametrize("backward_first", [False, True])
def test_explore_and_trace_leave_every_grad_bit_identical(tmp_path, backward_first):
    loss = model()
    if backward_first:
        loss.backward()                             # the natural order: backward, then look
    before = grads(loss)
    assert any(g is not None for g, _ in before) == backward_first
    page = explore(loss, tmp_path / "bp.html")
    assert grads(loss) == before and all(a is b for (a, _), (b, _) in zip(before, grads(loss)))
    trace_backward(loss)
    assert grads(loss) == before and all(a is b for (a, _), (b, _) in zip(before, grads(loss)))
    data = page_json(page.path.read_text())
    ref = model()
    ref.backward()
    last = {e["to"]: e for s in data["steps"] for e in s["sent"] if e["grad"]}   # what W finally got
    W = next(k for k, t in enumerate(graph_nodes(ref)) if t.name == "W")
    np.testing.assert_allclose(np.reshape(last[f"t{W}"]["total"]["flat"], (4, 3)), graph_nodes(ref)[W].grad, rtol=1e-5)
    if not backward_first:
        loss.backward()                             # explore used nothing up: backward still runs


def test_explore_returns_a_path_like_page_that_jupyter_shows_inline(tmp_path):
    page = explore(model(names=("x", "W & <b>")), tmp_path / "bp.html")
    assert page.path == tmp_path / "bp.html" and os.fspath(page) == str(page) == str(tmp_path / "bp.html")
    assert page == tmp_path / "bp.html" and open(page, encoding="utf-8").read().startswith("<!DOCTYPE html>")
    snippet = page._repr_html_()
    m = re.fullmatch(r'<iframe srcdoc="([^"]*)" sandbox="allow-scripts allow-downloads" style="[^"]*"></iframe>', snippet)
    assert m, snippet[:200]
    assert "<" not in m.group(1) and "&lt;!DOCTYPE html&gt;" in m.group(1)
    assert html.unescape(m.group(1)) == page.path.read_text(encoding="utf-8")


def test_page_reaches_no_network(tmp_path):
    text = explore(model(), tmp_path / "bp.html", collapse="attn", rankdir="LR").path.read_text()
    urls = set(re.findall(r"[a-z]+://[^\s\"'<>)]*", text, re.I))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls   # SVG namespaces only
    assert "fetch(" not in text and "XMLHttpRequest" not in text and "import(" not in text


def test_collapse_and_rankdir_reach_the_plan_and_the_drawing(tmp_path, monkeypatch):
    import viz.explorer as explorer_module
    seen = []
    real_plan, real_draw = explorer_module.GraphPlan, explorer_module.draw_graph
    monkeypatch.setattr(explorer_module, "GraphPlan", lambda root, collapse=None: seen.append(
        ("plan", collapse)) or real_plan(root, collapse))
    monkeypatch.setattr(explorer_module, "draw_graph", lambda root, **kw: seen.append(
        ("draw", kw["collapse"], kw["rankdir"])) or real_draw(root, **kw))
    explore(model(), tmp_path / "a.html")
    explore(model(), tmp_path / "b.html", collapse="attn", rankdir="LR")     # "repeats" goes the same way
    assert seen == [("plan", None), ("draw", None, "TB"), ("plan", "attn"), ("draw", "attn", "LR")]


def test_only_tensors_up_to_32_by_32_are_listed(tmp_path):
    x = Tensor(np.ones((1, 32, 32)), requires_grad=True, name="fits")
    y = Tensor(np.ones((33, 2)), requires_grad=True, name="too_long")
    z = Tensor(np.ones((4, 16, 16)), requires_grad=True, name="stack")        # 4 heatmaps, 1024 numbers
    w = Tensor(np.ones((5, 16, 16)), requires_grad=True, name="big_stack")
    loss = (x * 2.0).sum() + (y * 3.0).sum() + (z * 1.0).sum() + (w * 1.0).sum()
    data = page_json(explore(loss, tmp_path / "b.html").path.read_text())
    value = {n.get("name"): n.get("value") for n in data["nodes"].values()}
    assert len(value["fits"]["flat"]) == len(value["stack"]["flat"]) == 1024
    assert "stats" in value["too_long"] and "stats" in value["big_stack"]


# ----------------------------------------------------------------------------- headless Chromium
@pytest.fixture(scope="module")
def browser():
    yield from chromium(downloads=True)


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


def chain(n=30):
    """A long graph (n tanh ops in a row): taller than the window, so the view must follow."""
    x = Tensor(np.linspace(-1, 1, 4).reshape(1, 4, 1) @ np.ones((1, 1, 4)), requires_grad=True, name="x")  # (1, 4, 4)
    h = x
    for i in range(n):
        h = (h * 0.9).tanh()
        h.name = f"h{i}"
    loss = h.sum()
    loss.name = "loss"
    return loss


def scale(driver):
    return float(by_id(driver, "graph").get_attribute("data-scale"))


def rect(driver, element):
    return driver.execute_script("var r = arguments[0].getBoundingClientRect();"
                                 "return [r.left, r.top, r.right, r.bottom];", element)


def pane_rect(driver):
    return driver.execute_script("var p = document.getElementById('graph'), r = p.getBoundingClientRect();"
                                 "return [r.left, r.top, r.left + p.clientWidth, r.top + p.clientHeight];")


def inside(inner, outer):
    return inner[0] >= outer[0] - 1 and inner[1] >= outer[1] - 1 and inner[2] <= outer[2] + 1 and inner[3] <= outer[3] + 1


def current_node(driver):
    from selenium.webdriver.common.by import By
    return driver.find_element(By.CSS_SELECTOR, "#graph g.node.current")


def test_opens_top_to_bottom_at_a_readable_scale(browser, tmp_path):
    path = explore(chain(), tmp_path / "chain.html").path
    browser.get(path.as_uri())
    s = scale(browser)
    assert 0.6 <= s <= 1.3                                   # legible: not a thumbnail of the graph
    svg = rect(browser, browser.find_element("css selector", "#graph svg"))
    assert svg[3] - svg[1] > 2 * (svg[2] - svg[0])          # a chain laid out top to bottom is tall
    assert inside(rect(browser, current_node(browser)), pane_rect(browser))   # step 1 (the bottom) in view
    legend = by_id(browser, "legend").text
    for words in ("current op", "op done by backward", "tensor holding a gradient", "leaf needing a gradient"):
        assert words in legend


def test_wheel_zooms_around_the_cursor_and_buttons_zoom_and_fit(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin
    path = explore(model(), tmp_path / "bp.html").path
    browser.get(path.as_uri())
    s0 = scale(browser)
    node = current_node(browser)                             # in view at the start
    before = rect(browser, node)
    x, y = int((before[0] + before[2]) / 2), int((before[1] + before[3]) / 2)
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_viewport(x, y), 0, -300).perform()
    s1 = scale(browser)
    assert s1 > s0 * 1.2                                     # wheel up: zoom in
    after = rect(browser, node)                              # ... around the cursor: the node stays under it
    assert after[0] < x < after[2] and after[1] < y < after[3]
    assert abs((after[0] + after[2]) / 2 - x) < 3 and abs((after[1] + after[3]) / 2 - y) < 3
    ActionChains(browser).scroll_from_origin(ScrollOrigin.from_viewport(x, y), 0, 300).perform()
    assert scale(browser) < s1                               # wheel down: zoom out
    s2 = scale(browser)
    by_id(browser, "zoom-in").click()
    assert scale(browser) == pytest.approx(s2 * 1.25, rel=1e-3)
    by_id(browser, "zoom-out").click()
    by_id(browser, "zoom-out").click()
    assert scale(browser) == pytest.approx(s2 / 1.25, rel=1e-3)
    by_id(browser, "fit").click()
    assert inside(rect(browser, browser.find_element("css selector", "#graph svg")), pane_rect(browser))
    from selenium.webdriver.common.keys import Keys
    fitted = scale(browser)
    ActionChains(browser).send_keys("+").perform()
    assert scale(browser) == pytest.approx(fitted * 1.25, rel=1e-3)
    ActionChains(browser).send_keys("-").send_keys("-").perform()
    assert scale(browser) == pytest.approx(fitted / 1.25, rel=1e-3)
    ActionChains(browser).send_keys("0").perform()
    assert scale(browser) == pytest.approx(fitted, rel=1e-3)


def test_drag_pans_the_graph(browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    browser.get(explore(chain(), tmp_path / "chain.html").path.as_uri())
    pane = by_id(browser, "graph")
    top = browser.execute_script("return arguments[0].scrollTop", pane)
    ActionChains(browser).move_to_element(pane).click_and_hold().move_by_offset(0, 200).release().perform()
    assert browser.execute_script("return arguments[0].scrollTop", pane) == pytest.approx(top - 200, abs=2)


def test_next_keeps_the_current_op_in_view(browser, tmp_path):
    path = explore(chain(), tmp_path / "chain.html").path
    browser.get(path.as_uri())
    tops = []
    for _ in range(24):
        by_id(browser, "next").click()
        r = rect(browser, current_node(browser))
        assert inside(r, pane_rect(browser)), (r, pane_rect(browser))
        tops.append(browser.execute_script("return document.getElementById('graph').scrollTop"))
    assert tops[-1] < tops[0]                               # it scrolled up the chain as it went


def fetch_download(driver, kind):
    """The bytes behind the page's download link once it holds a `kind` file (base64 over the wire)."""
    import base64
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 10).until(lambda d: by_id(d, "download").get_attribute("data-kind") == kind)
    link = by_id(driver, "download")
    assert link.get_attribute("download").endswith("." + kind)
    encoded = driver.execute_async_script("""
        var done = arguments[arguments.length - 1];
        fetch(document.getElementById("download").href).then(function (r) { return r.blob(); }).then(function (b) {
          var reader = new FileReader();
          reader.onload = function () { done(reader.result.split(",")[1]); };
          reader.readAsDataURL(b);
        });""")
    return base64.b64decode(encoded)


def test_download_buttons_give_this_steps_svg_and_png(browser, tmp_path):
    import struct
    import xml.etree.ElementTree as ET
    browser.get(explore(model(), tmp_path / "bp.html").path.as_uri())
    for _ in range(3):
        by_id(browser, "next").click()
    current = highlighted(browser)[0]
    by_id(browser, "save-svg").click()
    svg = fetch_download(browser, "svg").decode("utf-8")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "backward step 4/" in svg                        # the caption names the step
    ns = {"s": "http://www.w3.org/2000/svg"}
    node = next(g for g in root.iterfind(".//s:g", ns) if g.findtext("s:title", namespaces=ns) == current)
    shape = node.find("s:path", ns) if node.find("s:path", ns) is not None else node.find("s:polygon", ns)
    assert "rgb(214, 39, 40)" in shape.get("style")          # the red outline, inlined
    done = [g for g in root.iterfind(".//s:g", ns) if "rgb(217, 240, 211)" in "".join(
        (p.get("style") or "") for p in g.iterfind("s:path", ns))]
    assert len(done) == 3                                    # three ops done, green
    by_id(browser, "save-png").click()
    png = fetch_download(browser, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    width, height = struct.unpack(">II", png[16:24])         # the IHDR chunk
    assert width > 200 and height > 200


def test_small_tensors_are_heatmaps_with_values_on_hover(browser, tmp_path):
    rng = np.random.default_rng(1)
    s = Tensor(rng.normal(size=(1, 4, 4)), requires_grad=True, name="scores")     # one head, T = 4
    loss = (s.softmax(axis=-1) * Tensor(rng.normal(size=(4, 4)), name="u")).sum()
    browser.get(explore(loss, tmp_path / "h.html").path.as_uri())
    by_id(browser, "next").click()                           # step 2: Mul sends (1, 4, 4) gradients
    for view in ("grad-view", "sent-view"):
        cells = by_id(browser, view).find_elements("css selector", "table.heatmap td")
        assert len(cells) >= 16 and all(c.get_attribute("title").startswith("[") for c in cells)
    svg_node(browser, "t0").click()
    detail = by_id(browser, "node-detail")
    cells = detail.find_elements("css selector", "table.heatmap")[0].find_elements("css selector", "td")
    assert len(cells) == 16 and len(detail.find_elements("css selector", "table.heatmap tr")) == 4
    values = s.numpy().reshape(-1)
    assert [c.get_attribute("title") for c in cells[:2]] == [f"[0, 0] = {values[0]:.4g}", f"[0, 1] = {values[1]:.4g}"]
    colours = {c.value_of_css_property("background-color") for c in cells}
    assert len(colours) > 8                                  # a colour scale, not one flat colour


def test_the_inline_iframe_runs_the_explorer(browser, tmp_path):
    page = explore(model(names=(XSS, "W")), tmp_path / "bp.html")
    notebook = tmp_path / "cell.html"                    # what Jupyter puts into an output cell
    notebook.write_text(f"<!DOCTYPE html><html><body>{page._repr_html_()}</body></html>", encoding="utf-8")
    browser.get(notebook.as_uri())
    browser.switch_to.frame(browser.find_element("css selector", "iframe"))
    try:
        assert by_id(browser, "step-index").text == "1"
        by_id(browser, "next").click()
        assert by_id(browser, "step-index").text == "2" and len(highlighted(browser)) == 1
        assert browser.execute_script("return window.__xss === undefined")
    finally:
        browser.switch_to.default_content()
