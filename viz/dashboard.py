"""The training dashboard: one HTML page, no external assets, drawn on <canvas> by a small
script, for a run folder's diagnostics.jsonl (transformer.Diagnostics) and metrics.jsonl.

  serve(run_dir, port)       `tx dashboard RUN`: the standard library's HTTP server on 127.0.0.1;
                             the page polls /records?from=N every second and appends what is new,
                             so it follows a run while `tx train` writes it, and keeps showing the
                             last state when the run ends (or the server goes away).
  write_report(run_dir, out) `tx report RUN --out report.html`: the same page with the records
                             embedded, one self-contained file.
  write_pngs(run_dir, dir)   `tx report RUN --png DIR`: the same views as matplotlib PNGs.

Views: loss (each recorded step's batch loss, and the evaluations of metrics.jsonl), gradient
norm per parameter over steps (a parameter x step heatmap, log colour scale), update ratio per
parameter with the 1e-3 reference line, attention entropy as a layer x head grid of curves over
steps, and the saturated fraction of each non-linearity's inputs. A filter box keeps only the
parameters whose name contains the text (e.g. "h.2." or "attn")."""
import html
import http.server
import json
import os
import pathlib
import threading
import urllib.parse

from transformer.diagnostics import read_records

from . import diagnostics_plots

DIAGNOSTICS_FILE, METRICS_FILE = "diagnostics.jsonl", "metrics.jsonl"


class RecordTail:
    """Reads a growing .jsonl file incrementally: only complete lines (ending in a newline) are
    parsed, so a line being written is picked up on a later call; a file that shrank (a
    resumed run rewrote it) is read again from the start."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.offset, self.records, self.generation = 0, [], 0

    def poll(self):
        try:
            size = os.path.getsize(self.path)
        except OSError:
            return self.records
        if size < self.offset:
            self.offset, self.records, self.generation = 0, [], self.generation + 1
        if size == self.offset:
            return self.records
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            chunk = f.read(size - self.offset)
        end = chunk.rfind(b"\n")
        if end < 0:
            return self.records
        for line in chunk[:end].split(b"\n"):
            try:
                self.records.append(json.loads(line))
            except ValueError:              # a corrupt line is skipped, the rest still shows
                continue
        self.offset += end + 1
        return self.records


def page_html(title, records=None, metrics=None):
    """The dashboard page. With `records` the data are embedded (a static report); without,
    the page polls the server it came from."""
    data = "null" if records is None else json.dumps({"records": records, "metrics": metrics or [], "generation": 0})
    data = data.replace("</", "<\\/")                     # no "</script>" inside the data block
    return (PAGE.replace("__TITLE__", html.escape(title))
                .replace("__DATA__", data))


def _run_paths(run_dir):
    run = pathlib.Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"run folder {run} does not exist")
    return run / DIAGNOSTICS_FILE, run / METRICS_FILE


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "tx-dashboard"

    def log_message(self, *args):           # quiet: the terminal belongs to the user
        pass

    def _send(self, body, content_type, status=200):
        body = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        srv = self.server
        if url.path == "/":
            return self._send(page_html(srv.title), "text/html; charset=utf-8")
        if url.path == "/records":
            query = urllib.parse.parse_qs(url.query)
            try:
                start = max(0, int(query.get("from", ["0"])[0]))
                generation = int(query.get("generation", ["-1"])[0])
            except ValueError:
                return self._send(json.dumps({"error": "from and generation must be integers"}), "application/json", 400)
            with srv.lock:
                records = srv.diagnostics.poll()
                metrics = srv.metrics.poll()
                gen = srv.diagnostics.generation
            if generation != gen:            # the file was rewritten: the page starts over
                start = 0
            body = {"records": records[start:], "total": len(records), "generation": gen, "metrics": metrics}
            return self._send(json.dumps(body), "application/json")
        if url.path == "/favicon.ico":
            return self._send("", "image/x-icon", 204)
        return self._send("not found", "text/plain", 404)


def serve(run_dir, port=8000):
    """An HTTP server for the dashboard of run_dir on 127.0.0.1:port (0: any free port), not yet
    serving: call .serve_forever() (or run it in a thread). server.url is the page's address."""
    diag_path, metrics_path = _run_paths(run_dir)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    srv.daemon_threads = True
    srv.title = f"tx dashboard: {pathlib.Path(run_dir).resolve().name}"
    srv.diagnostics, srv.metrics, srv.lock = RecordTail(diag_path), RecordTail(metrics_path), threading.Lock()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/"
    return srv


def write_report(run_dir, out):
    """The dashboard with the run's records embedded: one HTML file, nothing fetched."""
    diag_path, metrics_path = _run_paths(run_dir)
    records = read_records(diag_path)
    if not records:
        raise ValueError(f"{diag_path}: no diagnostics records (train with --diagnostics-interval N > 0)")
    out = pathlib.Path(out)
    out.write_text(page_html(f"tx report: {pathlib.Path(run_dir).resolve().name}", records, read_records(metrics_path)),
                   encoding="utf-8")
    return out


def write_pngs(run_dir, out_dir, dpi=120):
    """One PNG per view (loss, grad_norms, update_ratio, attention_entropy, saturation)."""
    diag_path, _ = _run_paths(run_dir)
    records = read_records(diag_path)
    if not records:
        raise ValueError(f"{diag_path}: no diagnostics records (train with --diagnostics-interval N > 0)")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in diagnostics_plots.panel_figures(records).items():
        path = out / f"{name}.png"
        fig.savefig(path, format="png", dpi=dpi, metadata={"Software": None})
        paths.append(path)
    return paths


PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body { font: 13px system-ui, sans-serif; margin: 12px 18px; color: #222; background: #fafafa; }
h1 { font-size: 17px; margin: 0 0 6px; }
#bar { display: flex; gap: 18px; align-items: center; margin-bottom: 10px; }
#status.live { color: #1a7f37; } #status.stale { color: #b35900; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(620px, 1fr)); gap: 12px; }
.card { background: white; border: 1px solid #ddd; border-radius: 6px; padding: 8px 10px; }
.card h2 { font-size: 14px; margin: 0 0 4px; } .card p { margin: 0 0 6px; color: #666; }
canvas { display: block; width: 100%; }
#entropy { display: grid; gap: 3px; }
#entropy .cell { border: 1px solid #eee; font-size: 10px; padding: 1px 2px; }
#tip { position: fixed; pointer-events: none; background: #222; color: #fff; padding: 2px 6px;
       border-radius: 3px; font-size: 11px; display: none; }
</style></head><body>
<h1>__TITLE__</h1>
<div id="bar"><span>step <b id="step" data-step="">-</b></span><span>records <b id="count">0</b></span>
<span id="status">loading</span>
<label>parameters containing <input id="filter" size="14" placeholder="e.g. h.0. or attn"></label>
<label><input type="checkbox" id="by-layer"> heatmap rows per layer</label></div>
<div class="grid">
<div class="card"><h2>loss</h2><p>each recorded step's batch loss; evaluations (train/val) from metrics.jsonl</p><canvas id="loss" height="260"></canvas></div>
<div class="card"><h2>update ratio per parameter</h2><p>||lr &middot; update|| / ||w||, log scale; dashed: the 1e-3 rule of thumb</p><canvas id="ratio" height="260"></canvas></div>
<div class="card"><h2>gradient norm per parameter over steps</h2><p>rows: parameters in model order (or layers); colour: log10 gradient norm</p><canvas id="heat" height="360"></canvas></div>
<div class="card"><h2>attention entropy (nats), layer x head</h2><p>each cell: entropy over steps (mean over queries); number: the latest</p><div id="entropy"></div></div>
<div class="card"><h2>saturated non-linearity inputs</h2><p>fraction in the flat region (tanh |x|&gt;2, sigmoid |x|&gt;4, GELU x&lt;-3, ReLU x&lt;=0)</p><canvas id="sat" height="260"></canvas></div>
</div>
<div id="tip"></div>
<script type="application/json" id="diag-data">__DATA__</script>
<script>
"use strict";
const STATIC = JSON.parse(document.getElementById("diag-data").textContent);
const state = {records: [], metrics: [], generation: -1};
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const tip = document.getElementById("tip");

function fit(canvas) {
  const r = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.height / (canvas._r || 1);
  canvas._r = r; canvas.width = w * r; canvas.height = h * r;
  const ctx = canvas.getContext("2d"); ctx.setTransform(r, 0, 0, r, 0, 0); ctx.clearRect(0, 0, w, h);
  ctx.font = "11px system-ui, sans-serif"; return [ctx, w, h];
}
function finite(v) { return typeof v === "number" && isFinite(v); }
function fmt(v) { return !finite(v) ? "-" : (Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-2)) ? v.toExponential(1) : v.toPrecision(3); }

// series: [{name, xs, ys, color, dash}]
function lineChart(canvas, series, opt) {
  const [ctx, w, h] = fit(canvas), L = opt.bare ? 2 : 56, R = opt.bare ? 2 : 10, T = opt.bare ? 2 : 8, B = opt.bare ? 2 : 26;
  const f = opt.log ? (v => v > 0 ? Math.log10(v) : NaN) : (v => v);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) s.xs.forEach((x, i) => { const y = f(s.ys[i]); if (finite(y)) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); } });
  if (opt.ref !== undefined) { y0 = Math.min(y0, f(opt.ref)); y1 = Math.max(y1, f(opt.ref)); }
  if (opt.ymin !== undefined) { y0 = opt.ymin; y1 = opt.ymax; }
  if (!finite(x0)) { ctx.fillStyle = "#999"; ctx.fillText("no data yet", w / 2 - 30, h / 2); return; }
  if (x1 === x0) x1 = x0 + 1; if (y1 === y0) { y1 += 0.5; y0 -= 0.5; }
  const X = x => L + (x - x0) / (x1 - x0) * (w - L - R), Y = y => T + (1 - (y - y0) / (y1 - y0)) * (h - T - B);
  ctx.strokeStyle = "#ccc"; ctx.fillStyle = "#555"; ctx.lineWidth = 1;
  // log scale: grid lines at whole powers of ten; linear: five even steps
  const yt = opt.log ? Array.from({length: Math.floor(y1) - Math.ceil(y0) + 1}, (_, k) => Math.ceil(y0) + k)
                     : [0, 1, 2, 3, 4].map(k => y0 + (y1 - y0) * k / 4);
  for (const y of opt.bare ? [] : yt) {
    ctx.beginPath(); ctx.moveTo(L, Y(y)); ctx.lineTo(w - R, Y(y)); ctx.stroke();
    ctx.fillText(opt.log ? "1e" + y : fmt(y), 2, Y(y) + 4);
  }
  for (let k = 0; k <= 4 && !opt.bare; k++) {
    const x = x0 + (x1 - x0) * k / 4; ctx.textAlign = k === 0 ? "left" : k === 4 ? "right" : "center";
    ctx.fillText(String(Math.round(x)), X(x), h - 8); ctx.textAlign = "left";
  }
  if (opt.ref !== undefined) { ctx.setLineDash([6, 4]); ctx.strokeStyle = "#000"; ctx.beginPath(); ctx.moveTo(L, Y(f(opt.ref))); ctx.lineTo(w - R, Y(f(opt.ref))); ctx.stroke(); ctx.setLineDash([]); ctx.fillText(opt.refLabel, w - R - 40, Y(f(opt.ref)) - 4); }
  series.forEach((s, k) => {
    ctx.strokeStyle = s.color || COLORS[k % COLORS.length]; ctx.lineWidth = s.width || 1.4; ctx.setLineDash(s.dash || []);
    ctx.beginPath(); let pen = false;
    s.xs.forEach((x, i) => { const y = f(s.ys[i]); if (!finite(y)) { pen = false; return; } if (pen) ctx.lineTo(X(x), Y(y)); else ctx.moveTo(X(x), Y(y)); pen = true; });
    ctx.stroke(); ctx.setLineDash([]);
  });
  const named = series.filter(s => s.legend !== false);
  if (named.length <= 8) named.forEach((s, k) => { ctx.fillStyle = s.color || COLORS[series.indexOf(s) % COLORS.length]; ctx.fillText(s.name, w - R - 150, T + 12 + 13 * k); });
  else { ctx.fillStyle = "#777"; ctx.fillText(`${named.length} curves: hover for names, or filter`, L + 8, T + 12); }
  canvas.onmousemove = e => {          // the nearest point of any curve, with its name and value
    const b = canvas.getBoundingClientRect(), mx = e.clientX - b.left, my = e.clientY - b.top;
    let best = null, bd = 144;
    for (const s of series) s.xs.forEach((x, i) => { const y = f(s.ys[i]); if (!finite(y)) return;
      const d = (X(x) - mx) ** 2 + (Y(y) - my) ** 2; if (d < bd) { bd = d; best = [s, x, s.ys[i]]; } });
    if (!best) { tip.style.display = "none"; return; }
    tip.textContent = `${best[0].name ? best[0].name + " " : ""}step ${best[1]}: ${fmt(best[2])}`; tip.style.display = "block";
    tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px";
  };
  canvas.onmouseleave = () => { tip.style.display = "none"; };
}

function viridis(t) {   // a 5-stop approximation of matplotlib's viridis
  const st = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  t = Math.max(0, Math.min(1, t)) * 4; const i = Math.min(3, Math.floor(t)), u = t - i, a = st[i], b = st[i + 1];
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * u)).join(",")})`;
}

// "h.0.attn.c_attn.weight" -> "h.0": up to the first numeric part; "wte.weight" -> "wte"
function layerOf(name) { const parts = name.split("."), i = parts.findIndex(p => /^\d+$/.test(p)); return i < 0 ? parts[0] : parts.slice(0, i + 1).join("."); }

// one row per layer: the norm of all its parameters' gradients together, sqrt(sum of squares)
function byLayer(names, recs) {
  const layers = [...new Set(names.map(layerOf))];
  const rows = recs.map(r => { const params = {};
    for (const L of layers) { let sq = 0, any = false;
      for (const n of names) if (layerOf(n) === L && r.params[n] && finite(r.params[n].grad_norm)) { sq += r.params[n].grad_norm ** 2; any = true; }
      params[L] = {grad_norm: any ? Math.sqrt(sq) : null}; }
    return {step: r.step, params}; });
  return [layers, rows];
}

function heatmap(canvas, rows, recs) {
  const n = rows.length, minH = Math.max(200, 12 * n + 40);
  if (canvas.height / (canvas._r || 1) !== minH) { canvas.height = minH * (canvas._r || 1); }
  const [ctx, w, h] = fit(canvas), L = 170, R = 70, T = 4, B = 22;
  if (!n || !recs.length) { ctx.fillStyle = "#999"; ctx.fillText("no data yet", w / 2 - 30, h / 2); return; }
  const vals = rows.map(name => recs.map(r => { const p = r.params[name]; const g = p && p.grad_norm; return g > 0 ? Math.log10(g) : NaN; }));
  let lo = Infinity, hi = -Infinity; vals.flat().forEach(v => { if (finite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
  if (hi === lo) hi = lo + 1;
  const cw = (w - L - R) / recs.length, ch = (h - T - B) / n;
  rows.forEach((name, i) => {
    vals[i].forEach((v, j) => { ctx.fillStyle = finite(v) ? viridis((v - lo) / (hi - lo)) : "#eee"; ctx.fillRect(L + j * cw, T + i * ch, Math.ceil(cw), Math.ceil(ch)); });
    if (ch >= 7) { ctx.fillStyle = "#333"; ctx.fillText(name.length > 28 ? "..." + name.slice(-27) : name, 2, T + i * ch + ch / 2 + 4); }
  });
  ctx.fillStyle = "#555"; ctx.fillText("step " + recs[0].step, L, h - 6); ctx.fillText(String(recs[recs.length - 1].step), w - R - 30, h - 6);
  for (let k = 0; k <= 10; k++) { ctx.fillStyle = viridis(k / 10); ctx.fillRect(w - R + 12, T + (1 - k / 10) * (h - T - B - 10), 12, (h - T - B) / 10); }
  ctx.fillStyle = "#333"; ctx.fillText("1e" + hi.toFixed(1), w - R + 26, T + 10); ctx.fillText("1e" + lo.toFixed(1), w - R + 26, h - B - 4);
  canvas.onmousemove = e => {
    const b = canvas.getBoundingClientRect(), j = Math.floor((e.clientX - b.left - L) / cw), i = Math.floor((e.clientY - b.top - T) / ch);
    if (i < 0 || i >= n || j < 0 || j >= recs.length) { tip.style.display = "none"; return; }
    const p = recs[j].params[rows[i]];
    tip.textContent = `${rows[i]} step ${recs[j].step}: grad ${fmt(p && p.grad_norm)}`; tip.style.display = "block";
    tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px";
  };
  canvas.onmouseleave = () => { tip.style.display = "none"; };
}

function entropyGrid(div, recs) {
  const withAttn = recs.filter(r => r.attention);
  if (!withAttn.length) { div.textContent = "no attention layers in this model"; return; }
  const last = withAttn[withAttn.length - 1].attention, layers = Object.keys(last).filter(k => last[k].entropy);
  const H = Math.max(...layers.map(k => last[k].entropy.length));
  let hi = 0; withAttn.forEach(r => layers.forEach(k => ((r.attention[k] || {}).entropy || []).forEach(e => { if (finite(e)) hi = Math.max(hi, e); })));
  div.style.gridTemplateColumns = `90px repeat(${H}, 1fr)`; div.innerHTML = "";
  const add = (el, text) => { const d = document.createElement(el); d.textContent = text; div.appendChild(d); return d; };
  add("div", ""); for (let hd = 0; hd < H; hd++) add("div", "head " + hd);
  layers.forEach(k => {
    add("div", k);
    for (let hd = 0; hd < H; hd++) {
      const cell = add("div", ""); cell.className = "cell";
      const ys = withAttn.map(r => ((r.attention[k] || {}).entropy || [])[hd]), xs = withAttn.map(r => r.step), now = ys[ys.length - 1];
      cell.style.background = `rgba(120, 60, 160, ${finite(now) && hi ? 0.08 + 0.35 * (1 - now / hi) : 0})`;
      const label = document.createElement("div"); label.textContent = fmt(now); cell.appendChild(label);
      const c = document.createElement("canvas"); c.height = 40; cell.appendChild(c);
      lineChart(c, [{name: `${k} head ${hd}`, xs, ys, color: "#5b2a86", legend: false}], {ymin: 0, ymax: hi || 1, bare: true});
    }
  });
}

function draw() {
  const recs = state.records, last = recs[recs.length - 1];
  const stepEl = document.getElementById("step");
  stepEl.textContent = last ? last.step : "-"; stepEl.dataset.step = last ? last.step : "";
  document.getElementById("count").textContent = recs.length;
  const q = document.getElementById("filter").value.trim();
  const names = last ? Object.keys(last.params).filter(n => n.includes(q)) : [];
  const steps = recs.map(r => r.step);
  const loss = [{name: "batch loss", xs: steps, ys: recs.map(r => r.loss)}];
  for (const [key, color] of [["train_loss", "#2ca02c"], ["val_loss", "#d62728"]])
    if (state.metrics.some(m => key in m)) loss.push({name: key, xs: state.metrics.map(m => m.step), ys: state.metrics.map(m => m[key]), color, width: 2});
  lineChart(document.getElementById("loss"), loss, {});
  lineChart(document.getElementById("ratio"), names.map((n, k) => ({name: n, xs: steps, ys: recs.map(r => (r.params[n] || {}).update_ratio), width: 1})),
            {log: true, ref: 1e-3, refLabel: "1e-3"});
  if (document.getElementById("by-layer").checked) heatmap(document.getElementById("heat"), ...byLayer(names, recs));
  else heatmap(document.getElementById("heat"), names, recs);
  entropyGrid(document.getElementById("entropy"), recs);
  const acts = last && last.activations ? Object.keys(last.activations) : [];
  lineChart(document.getElementById("sat"), acts.map(k => ({name: k, xs: steps, ys: recs.map(r => ((r.activations || {})[k] || {}).saturated)})), {ymin: 0, ymax: 1});
}

// a record without a numeric step is left out; missing sections read as empty
function clean(recs) { return recs.filter(r => r && typeof r.step === "number").map(r => Object.assign({params: {}}, r)); }

function setStatus(text, cls) { const s = document.getElementById("status"); s.textContent = text; s.className = cls; }

async function poll() {
  try {
    const res = await fetch(`records?from=${state.records.length}&generation=${state.generation}`, {cache: "no-store"});
    const body = await res.json();
    if (body.generation !== state.generation) { state.records = []; state.generation = body.generation; }
    const changed = body.records.length || body.metrics.length !== state.metrics.length;
    state.records.push(...clean(body.records)); state.metrics = body.metrics;
    if (changed) draw();
    setStatus(`live, updated ${new Date().toLocaleTimeString()}`, "live");
  } catch (e) {
    setStatus("server not reachable (run over?); showing the last data, retrying", "stale");
  }
  setTimeout(poll, 1000);
}

document.getElementById("filter").addEventListener("input", draw);
document.getElementById("by-layer").addEventListener("change", draw);
window.addEventListener("resize", draw);
if (STATIC) { state.records = clean(STATIC.records); state.metrics = STATIC.metrics; draw(); setStatus("static report", ""); }
else poll();
</script></body></html>
"""

__all__ = ["serve", "write_report", "write_pngs", "page_html", "RecordTail"]
