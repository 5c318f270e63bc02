"""Help that cannot lie: every ``fer-lightning`` command line the project shows (README.md,
data/README.md and docs/*.md code blocks, the tools' module docs that ``--help`` prints, the usage comments of
the experiment files) goes through that command's own parser. Placeholders (``CKPT``, ``DIR``)
become values, ``[optional]`` brackets and ``a|b`` alternatives are resolved, ``...`` elisions
dropped; what is left must parse."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest
from checkout import ROOT

DOCS = ("README.md", "data/README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")))
MODULES = ("fer_lightning/cli/main.py", "fer_lightning/cli/sweep.py", "fer_lightning/cli/ablation.py",
           "fer_lightning/inference/predict.py", "fer_lightning/inference/evaluate.py",
           "fer_lightning/inference/submit.py", "fer_lightning/inference/export.py")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*(\.\.\.)?$")
LIGHTNING = ("fit", "validate", "test")


def _command(line: str) -> str | None:
    at = line.find("fer-lightning ")
    if at < 0 or line[at - 1: at] in ("/", "-", "`") and not line[:at].endswith(".venv/bin/"):
        return None
    return line[at:].split("  #")[0].strip()


def markdown_lines(path: Path) -> list[tuple[str, str]]:
    out, block, joined = [], False, ""
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            block = not block
            continue
        if not block:
            continue
        joined += line.rstrip("\\").rstrip() + " " if line.rstrip().endswith("\\") else line
        if line.rstrip().endswith("\\"):
            continue
        if (cmd := _command(joined)) is not None:
            out.append((f"{path.relative_to(ROOT)}:{k}", cmd))
        joined = ""
    return out


def docstring_lines(path: Path) -> list[tuple[str, str]]:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    lines, out = doc.splitlines(), []
    for k, line in enumerate(lines):
        if not line.strip().startswith("fer-lightning "):
            continue
        cmd = line.strip()
        for more in lines[k + 1:]:  # a usage line continued on indented lines of options
            if not more.strip().startswith(("[", "--")):
                break
            cmd += " " + more.strip()
        out.append((f"{path.relative_to(ROOT)} (docstring)", cmd))
    return out


def experiment_lines() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "experiments").rglob("*.yaml")):
        for k, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith("#") and line.lstrip("# ").startswith("fer-lightning ") and " --" in line:
                out.append((f"{path.relative_to(ROOT)}:{k}", line.lstrip("# ").strip()))
    return out


def all_lines() -> list[tuple[str, str]]:
    """(where, command line) of every line that runs a ``fer-lightning`` subcommand."""
    from fer_lightning.cli.main import LIGHTNING as LIGHTNING_COMMANDS
    from fer_lightning.cli.main import TOOLS

    found = [x for d in DOCS for x in markdown_lines(ROOT / d)]
    found += [x for m in MODULES for x in docstring_lines(ROOT / m)]
    found += experiment_lines()
    return [(w, c) for w, c in found if (a := arguments(c)) and (a[0] in TOOLS or a[0] in LIGHTNING_COMMANDS)
            and not any(t.endswith(":") for t in a[:2])]  # `fer-lightning data check: what it does`: prose


def arguments(cmd: str) -> list[str]:
    """The argv a usage line stands for (see the module docs)."""
    args: list[str] = []
    try:
        tokens = shlex.split(cmd)[1:]
    except ValueError:  # prose with an apostrophe (a layout table's description), not a command
        tokens = cmd.split()[1:]
    for tok in tokens:
        if tok.startswith("[") and tok[1:2] in ("-", ""):
            tok = tok[1:]  # `[--option`: an optional part begins
        while tok.endswith("]") and tok.count("]") > tok.count("["):
            tok = tok[:-1]  # ... and ends
        if not tok:
            continue
        if tok == "...":
            if args and args[-1].startswith("--") and "=" not in args[-1]:
                args.pop()  # `--config ...`: the option and its elided value
            continue
        if tok.startswith("--") and "=" not in tok and "|" in tok:
            tok = tok.split("|")[0]
        elif "|" in tok and not tok.startswith("-"):
            tok = tok.split("|")[0]  # a choice: main|all
        if tok == "JSON":
            tok = "{}"
        elif tok == "BOOL":
            tok = "true"
        elif PLACEHOLDER.match(tok) or tok.startswith("$"):
            tok = "1"
        args.append(tok.removesuffix("..."))
    return args


class ParsedOnly(Exception):
    """Raised by a tool's parser once it has parsed: the usage line is valid, nothing runs."""


@pytest.fixture
def parse_only(monkeypatch):
    import fer_lightning.cli.parsing as parsing
    import fer_lightning.cli.tools as tools

    real = parsing.tool_parser

    def parser(*args, **kwargs):
        p = real(*args, **kwargs)
        parse = p.parse_args

        def parse_args(argv=None, **kw):
            parse(argv, **kw)
            raise ParsedOnly

        p.parse_args = parse_args
        return p

    monkeypatch.setattr(parsing, "tool_parser", parser)
    monkeypatch.setattr(tools, "tool_parser", parser)
    monkeypatch.chdir(ROOT)


def test_the_lines_are_found():
    found = all_lines()
    commands = {arguments(cmd)[0] for _, cmd in found if arguments(cmd)}
    assert len(found) > 60 and {"fit", "preprocess", "data", "predict", "evaluate", "submit", "export", "sweep",
                                "ablation", "synth"} <= commands, commands


@pytest.mark.parametrize("where, cmd", [x for x in all_lines() if arguments(x[1])
                                        and arguments(x[1])[0] not in LIGHTNING], ids=lambda x: str(x)[:60])
def test_every_shown_tool_line_parses(parse_only, where, cmd, capsys):
    from fer_lightning.cli.main import main

    args = arguments(cmd)
    if args[-1:] == ["--help"] or args == []:
        return
    with pytest.raises((ParsedOnly, SystemExit)) as got:
        main(args)
    if got.type is SystemExit:
        pytest.fail(f"{where}: `{cmd}` is rejected by its parser (argv {args}):\n{capsys.readouterr().err[-800:]}")


@pytest.mark.cli
def test_every_shown_fit_validate_test_line_parses(monkeypatch):
    # LightningCLI's own parser, in this process: --print_config parses everything, builds nothing
    from fer_lightning.cli.main import main

    monkeypatch.chdir(ROOT)
    bad = []
    for where, cmd in all_lines():
        args = arguments(cmd)
        if not args or args[0] not in LIGHTNING or "--help" in args:
            continue
        args = [a for a in args if a != "--print_config"] + ["--print_config"]
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exit_:
                code = exit_.code
        if code not in (0, None):
            bad.append(f"{where}: `{cmd}` -> {err.getvalue()[-400:]}")
    assert not bad, "\n".join(bad)
