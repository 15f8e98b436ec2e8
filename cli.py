"""`tx`: the command-line front door to tinygrad_tx.

    tx --version
    tx gradcheck [--op NAME ...]

Installed as a console script by `pip install -e .` (see pyproject.toml). This module sits at
the top of the dependency chain (tinygrad_tx <- transformer <- viz <- cli): it may import any
of them, and none of them imports it.
"""
import difflib

import click

import tinygrad_tx
from tinygrad_tx import selfcheck


@click.group(context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Run `tx COMMAND --help` for a command's options and an example.")
@click.version_option(tinygrad_tx.__version__, "--version", prog_name="tx",
                      message="%(prog)s, version %(version)s")
def main():
    """tinygrad_tx: a small reverse-mode autograd engine, built to make backprop visible.

    \b
    Example:
      tx gradcheck             check every op's backward against finite differences
    """


class OneLineUsageError(click.UsageError):
    """Bad input: print just `Error: ...` (no usage block, no traceback); exit status 2."""

    def show(self, file=None):
        click.echo(f"Error: {self.format_message()}", err=True)


def _check_case_names(names):
    """Every --op NAME must be a self-check case; otherwise a one-line usage error."""
    known = list(selfcheck.CASES)
    for name in names:
        if name not in selfcheck.CASES:
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise OneLineUsageError(f"--op: unknown case {name!r}; {hint}"
                                    f"`tx gradcheck` lists all {len(known)} case names")


@main.command(epilog="""\b
Examples:
  tx gradcheck                         all cases
  tx gradcheck --op add --op softmax   only the cases named add and softmax""")
@click.option("--op", "ops", metavar="NAME", multiple=True,
              help="Run only this case (a name from the first column); repeatable.")
def gradcheck(ops):
    """Check every op's backward pass against central differences.

    Each case builds a small float64 expression, computes its gradient with backward(), and
    compares it with (f(x + eps) - f(x - eps)) / (2 eps) for every input element. A case
    passes when the largest absolute difference is at most 1e-6. Exits 1 if any case fails.
    """
    _check_case_names(ops)
    rows = selfcheck.run_gradchecks(names=set(ops) or None)

    w_name = max(len("case"), *(len(r["name"]) for r in rows))
    w_op = max(len("op"), *(len(r["op"]) for r in rows))
    click.echo(f"{'case':<{w_name}}  {'op':<{w_op}}  {'max abs err':>11}  {'time ms':>8}  result")
    for r in rows:
        verdict = click.style("PASS", fg="green") if r["ok"] else click.style("FAIL", fg="red", bold=True)
        click.echo(f"{r['name']:<{w_name}}  {r['op']:<{w_op}}  {r['max_abs_err']:>11.1e}  "
                   f"{r['seconds'] * 1e3:>8.1f}  {verdict}")

    passed = sum(r["ok"] for r in rows)
    largest = max(r["max_abs_err"] for r in rows)
    click.echo(f"{passed}/{len(rows)} cases passed, {len({r['op'] for r in rows})} distinct ops, "
               f"largest error {largest:.1e}")
    if passed < len(rows):
        failed = ", ".join(r["name"] for r in rows if not r["ok"])
        click.echo(f"FAILED: {failed}", err=True)
        click.get_current_context().exit(1)


if __name__ == "__main__":
    main()
