"""One dialect for every ``fer-lightning`` tool: jsonargparse parsers (the library LightningCLI
is built on) with ``--config FILE`` and ``--key value`` / ``--section.key value`` options whose
defaults and help come from the tools' own dataclasses, shown by ``--help``. Booleans take a
value (``--render true``), as LightningCLI's do and W&B sweep agents pass them; fixed choices are
``Literal`` types, so the parser names the allowed values."""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Any, TypeVar

T = TypeVar("T")


def tool_parser(prog: str, description: str | None, config_help: str | None = None):
    """A jsonargparse parser for ``fer-lightning <tool>``: ``--config`` YAML files (repeatable,
    later ones and flags override earlier ones) and ``--print_config``; help shows defaults."""
    import argparse

    from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter

    class Formatter(DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """Defaults and types in the option list; the description as written."""

    parser = ArgumentParser(prog=prog, description=plain_text(description), formatter_class=Formatter)
    parser.add_argument("--config", action=ActionConfigFile,
                        help=config_help or "a YAML file with any of the options below (repeatable; later files "
                                            "and flags override earlier ones)")
    return parser


def plain_text(doc: str | None) -> str | None:
    """A docstring as help prints it: Sphinx roles (``:func:`~a.b.c```) become the name they
    show (``c``), double backquotes single ones."""
    if doc is None:
        return None
    doc = re.sub(r":(?:func|mod|class|meth|data|attr|obj):`~[\w.]*?\.?(\w+)`", r"`\1`", doc)
    doc = re.sub(r":(?:func|mod|class|meth|data|attr|obj):`([\w.]+)`", r"`\1`", doc)
    return doc.replace("``", "`")


def fail(parser, message: str) -> None:
    """Exit with status 2 and ``message``, as argparse's ``error``."""
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def dataclass_from(cls: type[T], cfg: Any, prefix: str = "") -> T:
    """An instance of the dataclass ``cls`` from the parsed options named after its fields
    (``prefix.field`` when the class was added under a section)."""
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = cfg.get(key, dataclasses.MISSING)
        if value is not dataclasses.MISSING:
            values[f.name] = tuple(value) if isinstance(value, list) and isinstance(f.default, tuple) else value
    return cls(**values)
