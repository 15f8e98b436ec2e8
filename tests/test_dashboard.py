"""viz.dashboard and `tx dashboard` / `tx report`: the JSON endpoint serves only complete lines and
starts over when the file is rewritten, the report is one self-contained file, the PNGs are
written, the CLI fails in one line; and in headless Chromium the live page shows a newly
appended step without a reload, keeps the last data when the server goes away, and the
static report shows its data without a server (skipped where Chromium or selenium is missing)."""
import json
import os
import re
import threading
import time
import urllib.request

import numpy as np
import pytest
from click.testing import CliRunner

import cli
from browser import chromium
from tinygrad_tx import Tensor, backend, nn, optim
from transformer import Diagnostics, GPT, GPTConfig, read_records
from viz import diagnostics_plots
from viz.dashboard import RecordTail, page_html, serve, write_pngs, write_report


def gpt_records(path, steps=3, seed=0):
    """A few real records of a tiny GPT trained in a user's loop, appended to path."""
    backend.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=9, block_size=6, n_layer=2, n_head=2, n_embd=8))
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    diag = Diagnostics(model, path, start_step=None)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        _, loss = model(rng.integers(0, 9, (2, 6)), rng.integers(0, 9, (2, 6)))
        diag.watch(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        diag.record(step, lr=1e-2)
    return diag.records


@pytest.fixture
def server(tmp_path):
    srv = serve(tmp_path, 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv, tmp_path
    srv.shutdown()
    srv.server_close()


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_record_tail_complete_lines_and_rewrites(tmp_path):
    path = tmp_path / "d.jsonl"
    tail = RecordTail(path)
    assert tail.poll() == []                               # no file yet
    path.write_text('{"step": 0}\n{"step": 1, "lo')
    assert [r["step"] for r in tail.poll()] == [0]
    with open(path, "a") as f:
        f.write('ss": 1}\nnot json\n{"step": 2}\n')
    assert [r["step"] for r in tail.poll()] == [0, 1, 2]   # the corrupt line is skipped
    path.write_text('{"step": 7}\n')                       # rewritten shorter (a resumed run)
    assert [r["step"] for r in tail.poll()] == [7] and tail.generation == 1


def test_server_endpoint_and_page(server):
    srv, run = server
    assert srv.server_address[0] == "127.0.0.1"
    with urllib.request.urlopen(srv.url, timeout=10) as r:
        page = r.read().decode()
    assert 'id="step"' in page and "__DATA__" not in page and "__TITLE__" not in page
    assert get_json(srv.url + "records?from=0") == {"records": [], "total": 0, "generation": 0, "metrics": []}
    recs = gpt_records(run / "diagnostics.jsonl", steps=2)
    (run / "metrics.jsonl").write_text('{"step": 0, "train_loss": 2.0, "val_loss": 2.1}\n')
    body = get_json(srv.url + "records?from=0&generation=0")
    assert body["total"] == 2 and body["records"] == recs and body["metrics"][0]["val_loss"] == 2.1
    assert get_json(srv.url + "records?from=1&generation=0")["records"] == recs[1:]
    with pytest.raises(urllib.error.HTTPError, match="400"):
        get_json(srv.url + "records?from=x")


def test_report_is_self_contained_and_pngs(tmp_path):
    recs = gpt_records(tmp_path / "diagnostics.jsonl", steps=3)
    (tmp_path / "diagnostics.jsonl").open("a").write('{"step": 3, "</script><script>window.__x=1</script>": 1}\n')
    path = write_report(tmp_path, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<link" not in text and "@import" not in text and "fetch(" in text     # fetch only in live mode
    assert text.count("</script>") == 2                  # the data cannot close its script block
    data = json.loads(re.search(r'<script type="application/json" id="diag-data">(.*?)</script>', text, re.S)
                      .group(1).replace("<\\/", "</"))
    assert data["records"][:3] == recs
    paths = write_pngs(tmp_path, tmp_path / "png")
    assert sorted(p.name for p in paths) == sorted(f"{n}.png" for n in diagnostics_plots.PANELS)
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    fig = diagnostics_plots.plot_diagnostics(recs)          # for Jupyter: a Figure
    assert len(fig.axes) >= 5


def test_plots_work_on_an_mlp_without_attention(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x).sigmoid().sum()
    net = Net()
    diag = Diagnostics(net)
    loss = net(Tensor(np.ones((2, 3))))
    diag.watch(loss)
    loss.backward()
    optim.SGD(net.parameters(), lr=0.1).step()
    fig = diagnostics_plots.plot_diagnostics([diag.record(0, lr=0.1)])
    assert any("no attention layers" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_cli_report_and_errors(tmp_path):
    gpt_records(tmp_path / "run" / "diagnostics.jsonl", steps=2)
    runner = CliRunner()
    res = runner.invoke(cli.main, ["report", str(tmp_path / "run"), "--out", str(tmp_path / "r.html"),
                                   "--png", str(tmp_path / "png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r.html").is_file() and len(list((tmp_path / "png").glob("*.png"))) == 5
    res = runner.invoke(cli.main, ["report", str(tmp_path / "nope")])
    assert res.exit_code == 1 and res.output.strip().splitlines() == [f"Error: run folder {tmp_path / 'nope'} does not "
                                                                       "exist (the --out of tx train)"]
    (tmp_path / "empty").mkdir()
    res = runner.invoke(cli.main, ["report", str(tmp_path / "empty")])
    assert res.exit_code == 1 and "no diagnostics records" in res.output
    res = runner.invoke(cli.main, ["dashboard", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "does not exist" in res.output


def test_cli_train_writes_diagnostics_at_the_interval(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcdefgh " * 200)
    args = ["train", "--data", str(text), "--max-iters", "6", "--eval-interval", "3", "--eval-iters", "1",
            "--block-size", "8", "--n-layer", "1", "--n-embd", "8", "--n-head", "2", "--batch-size", "2", "--no-progress"]
    res = CliRunner().invoke(cli.main, args + ["--out", str(tmp_path / "a"), "--diagnostics-interval", "2"])
    assert res.exit_code == 0, res.output
    assert [r["step"] for r in read_records(tmp_path / "a" / "diagnostics.jsonl")] == [0, 2, 4]
    res = CliRunner().invoke(cli.main, args + ["--out", str(tmp_path / "b"), "--diagnostics-interval", "0"])
    assert res.exit_code == 0 and not (tmp_path / "b" / "diagnostics.jsonl").exists()


# ----------------------------------------------------------------------------- in Chromium
@pytest.fixture(scope="module")
def browser():
    yield from chromium(window="1400,1000")


def wait_for(predicate, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


def shown_step(driver):
    return driver.execute_script("return document.getElementById('step').dataset.step")


def test_live_page_follows_appended_records(browser, server):
    srv, run = server
    path = run / "diagnostics.jsonl"
    gpt_records(path, steps=2)
    browser.get(srv.url)
    assert wait_for(lambda: shown_step(browser) == "1"), shown_step(browser)
    browser.execute_script("window.__same_page = true")
    with open(path, "a") as f:
        f.write('{"step": 2, "loss": 1.5, "lr": 0.01, "grad_')       # half a line: not shown yet
    time.sleep(1.5)
    assert shown_step(browser) == "1"
    recs = read_records(path)
    with open(path, "a") as f:                                          # finish it, then a real record
        f.write('norm": 1.0, "params": {}}\n')
        f.write(json.dumps({**recs[1], "step": 5}) + "\n")
    assert wait_for(lambda: shown_step(browser) == "5"), shown_step(browser)
    assert browser.execute_script("return window.__same_page") is True         # no reload happened
    assert browser.execute_script("return document.getElementById('count').textContent") == "4"
    # the entropy grid shows 2 layers x 2 heads
    assert len(browser.find_elements("css selector", "#entropy .cell")) == 4
    # heatmap rows: every parameter, those the filter keeps, or one per layer
    rows = "return byLayer(Object.keys(state.records[0].params), state.records)[0]"
    assert browser.execute_script(rows) == ["wte", "wpe", "h.0", "h.1", "ln_f"]
    total = browser.execute_script("return byLayer(Object.keys(state.records[0].params), state.records)[1][0].params['h.1'].grad_norm")
    assert total == pytest.approx(np.sqrt(sum(v["grad_norm"] ** 2 for k, v in recs[0]["params"].items() if k.startswith("h.1."))))
    status = browser.execute_script("return document.getElementById('status').className")
    assert status == "live"
    srv.shutdown()                                                      # the run (and server) went away
    srv.server_close()
    assert wait_for(lambda: browser.execute_script("return document.getElementById('status').className") == "stale")
    assert shown_step(browser) == "5"                                   # the last data stay on the page


def test_static_report_shows_its_data(browser, tmp_path):
    gpt_records(tmp_path / "diagnostics.jsonl", steps=3)
    path = write_report(tmp_path, tmp_path / "report.html")
    browser.get("about:blank")
    browser.get_log("browser")                         # drop what earlier pages logged
    browser.get(path.as_uri())
    assert wait_for(lambda: shown_step(browser) == "2")
    assert browser.execute_script("return document.getElementById('status').textContent") == "static report"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def test_cli_dashboard_serves_until_interrupted(tmp_path):
    import signal
    import subprocess
    import sys
    gpt_records(tmp_path / "diagnostics.jsonl", steps=1)
    proc = subprocess.Popen([sys.executable, "cli.py", "dashboard", str(tmp_path), "--port", "0"],
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/)", line).group(1)
        assert get_json(url + "records?from=0")["total"] == 1
    finally:
        proc.send_signal(signal.SIGINT)                  # Ctrl-C: a clean stop
        assert proc.wait(timeout=20) == 0, proc.stderr.read()
