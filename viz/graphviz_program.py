"""The Graphviz layout program: find it and run it.

The real `dot` (apt/brew package "graphviz") is used when it is on PATH. Otherwise the pip
package `graphviz-pure` (a dot-compatible command line, SVG and PNG only) is used, looked for
next to the running Python first (a virtual environment's bin/) and then on PATH.

The real `dot` measures text with the fonts installed. graphviz-pure measures it with metrics
built into it, and a browser then draws the SVG with whatever font it finds for "Helvetica"
(DejaVu Sans on many Linux machines, about 10% wider): text would overflow its box. So for
graphviz-pure the drawing's font is measured as DejaVu Sans, the widest of the common sans
fonts, and the SVG asks for DejaVu Sans, then Helvetica or Arial: whichever the viewer has fits.
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

INSTALL_HINT = ("install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), "
                "`brew install graphviz` (macOS), or `pip install graphviz-pure` (no system package)")

# which output formats each program can write
FORMATS = {"dot": ("svg", "png", "pdf"), "graphviz-pure": ("svg", "png")}

MEASURED_FONT = "DejaVu Sans"                             # graphviz-pure: measure text in this font
SVG_FONTS = "DejaVu Sans,Helvetica,Arial,sans-serif"      # and let the SVG fall back from it


class GraphvizNotFoundError(RuntimeError):
    """No layout program can write the requested format. `.dot_path` is the DOT source file
    written instead (when the caller wrote one), so the graph can be rendered later."""

    def __init__(self, message, dot_path=None):
        super().__init__(message)
        self.dot_path = dot_path


def _beside_python(name):
    """A console script installed in the same bin/ as this Python (a venv not on PATH)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.is_file() else None


def find_program():
    """(path, kind) of the layout program to use, kind "dot" or "graphviz-pure"; None if none."""
    path = shutil.which("dot")
    if path:
        return path, "dot"
    path = _beside_python("graphviz-pure") or shutil.which("graphviz-pure")
    if path:
        return path, "graphviz-pure"
    return None


def run_layout(source, fmt):
    """Lay out DOT `source` (str) and return the output in format `fmt` ("svg", "png", "pdf")."""
    found = find_program()
    if found is None:
        raise GraphvizNotFoundError(f"no Graphviz layout program found (`dot` is not on PATH and "
                                    f"graphviz-pure is not installed); {INSTALL_HINT}")
    path, kind = found
    if fmt not in FORMATS[kind]:
        raise GraphvizNotFoundError(f"{kind} cannot write {fmt} (only {', '.join(FORMATS[kind])}); "
                                    f"for {fmt}, {INSTALL_HINT.replace(', or `pip install graphviz-pure` (no system package)', '')}")
    if kind == "graphviz-pure":
        source = re.sub(r'\bfontname=(?:Helvetica\b|"Helvetica")', f'fontname="{MEASURED_FONT}"', source)
    proc = subprocess.run([path, f"-T{fmt}"], input=source.encode("utf-8"), capture_output=True, timeout=600)
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RuntimeError(f"{kind} failed (exit {proc.returncode}): {' | '.join(err[:3]) or 'no output'}")
    if kind == "graphviz-pure" and fmt == "svg":
        return proc.stdout.replace(f'font-family="{MEASURED_FONT}"'.encode(), f'font-family="{SVG_FONTS}"'.encode())
    return proc.stdout


def svg_of_source(source):
    """The SVG text of DOT `source`."""
    return run_layout(source, "svg").decode("utf-8")
