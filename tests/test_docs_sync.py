"""The docs stay in step with the code: every `tx` command (and each of its options) is in
docs/cli.md with an example, every public name is in docs/api.md, `tx --help` lists every
command, and README.md's links resolve and its Python example runs and prints what it shows."""
import ast
import contextlib
import inspect
import io
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import cli
import tinygrad_tx
import transformer
from tinygrad_tx import functional, nn, optim

ROOT = Path(__file__).resolve().parent.parent
CLI_MD = ROOT / "docs" / "cli.md"
API_MD = ROOT / "docs" / "api.md"
README = ROOT / "README.md"
COMMANDS = sorted(cli.main.commands)


def sections(text):
    """{heading: body} for every `## ` heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def code_lines(markdown):
    """The lines inside ``` fences."""
    return [line for block in re.findall(r"```[^\n]*\n(.*?)```", markdown, flags=re.S) for line in block.splitlines()]


# ----------------------------------------------------------------------------- docs/cli.md
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_cli_md_with_an_example(command):
    secs = sections(CLI_MD.read_text(encoding="utf-8"))
    body = secs.get(f"tx {command}")
    assert body is not None, f"docs/cli.md has no `## tx {command}` section"
    examples = [line for line in code_lines(body) if line.startswith(f"tx {command}")]
    assert examples, f"the `tx {command}` section has no example line starting with `tx {command}`"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_in_its_cli_md_section(command):
    body = sections(CLI_MD.read_text(encoding="utf-8")).get(f"tx {command}", "")
    flags = [flag for p in cli.main.commands[command].params if isinstance(p, click.Option)
             for flag in p.opts + p.secondary_opts if flag.startswith("--") and flag != "--help"]
    missing = [flag for flag in flags if not re.search(re.escape(flag) + r"(?![\w-])", body)]
    assert not missing, f"docs/cli.md `tx {command}` does not mention {missing}"


def test_cli_md_lists_no_command_that_does_not_exist():
    documented = {h[3:] for h in sections(CLI_MD.read_text(encoding="utf-8")) if h.startswith("tx ")}
    assert documented <= set(COMMANDS), documented - set(COMMANDS)


def test_help_lists_every_command():
    tx = Path(sys.executable).parent / "tx"
    if tx.exists():           # the installed console script, as a user runs it
        proc = subprocess.run([str(tx), "--help"], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
    else:
        result = CliRunner().invoke(cli.main, ["--help"])
        assert result.exit_code == 0
        out = result.output
    listed = {line.split()[0] for line in out.split("Commands:", 1)[1].split("\n\n")[0].splitlines() if line.strip()}
    assert listed == set(COMMANDS)


# ----------------------------------------------------------------------------- docs/api.md
def defined_in(module):
    """Public classes and functions defined in `module` itself (not imported into it)."""
    return sorted(name for name, obj in vars(module).items()
                  if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
                  and obj.__module__ == module.__name__)


def viz_exports():
    """The names viz/__init__.py imports (what `from viz import NAME` is documented to give)."""
    tree = ast.parse((ROOT / "viz" / "__init__.py").read_text(encoding="utf-8"))
    names = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names += [alias.asname or alias.name for alias in node.names]
    return [n for n in names if not n.startswith("_")]


PUBLIC = {
    "tinygrad_tx": list(tinygrad_tx.__all__),
    "functional": list(getattr(functional, "__all__", None) or defined_in(functional)),
    "nn": defined_in(nn),
    "optim": defined_in(optim),
    "transformer": list(transformer.__all__),
    "viz": viz_exports(),
}


def documented_identifiers():
    """Every identifier that appears inside a `code span` of docs/api.md."""
    text = API_MD.read_text(encoding="utf-8")
    fenced = re.findall(r"```[^\n]*\n(.*?)```", text, flags=re.S)
    prose = re.sub(r"```[^\n]*\n.*?```", "", text, flags=re.S)
    spans = re.findall(r"`([^`]+)`", prose)            # a span may wrap onto the next line
    return set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(spans + fenced)))


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_every_public_name_is_in_api_md(package):
    assert PUBLIC[package], f"found no public names for {package}"
    missing = [name for name in PUBLIC[package] if name not in documented_identifiers()]
    assert not missing, f"docs/api.md does not mention these public names of {package}: {missing}"


def test_tensor_methods_are_in_api_md():
    methods = [name for name, obj in vars(tinygrad_tx.Tensor).items()
               if not name.startswith("_") and (callable(obj) or isinstance(obj, property))]
    missing = [name for name in methods if name not in documented_identifiers()]
    assert not missing, f"docs/api.md does not mention Tensor.{missing}"


# ----------------------------------------------------------------------------- README.md
def test_readme_links_resolve():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)", text)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert "docs/figures/attention.svg" in local             # the image at the top
    for needed in ("docs/backprop.md", "docs/cli.md", "docs/api.md", "docs/notebooks/backprop.ipynb"):
        assert needed in local, needed
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_command_table_lists_every_command():
    text = README.read_text(encoding="utf-8")
    missing = [c for c in COMMANDS if f"`tx {c}`" not in text]
    assert not missing, missing


def test_readme_python_blocks_run_and_print_what_they_show(tmp_path, monkeypatch):
    """Each ```python block runs (in order, one namespace, in a scratch folder); when a plain
    ``` block follows it, that block is exactly what it prints."""
    pytest.importorskip("graphviz")
    from viz.graphviz_program import find_program
    if find_program() is None:
        pytest.skip("no Graphviz layout program (dot or graphviz-pure) to render with")
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```\n(?:\n```\n(.*?)```)?", text, flags=re.S)
    assert blocks, "README.md has no ```python block"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    for code, shown in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md", "exec"), namespace)
        if shown:
            assert out.getvalue() == shown, f"README shows:\n{shown}\nbut the block prints:\n{out.getvalue()}"
    assert (tmp_path / "neuron.svg").is_file()
