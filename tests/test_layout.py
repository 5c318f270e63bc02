"""The package's import rules (pyproject.toml, [tool.importlinter]) hold: imports run down the
pipeline, only the synthetic corpus and the demo use the generator, no cycles. Checked by
import-linter on the installed source, so a new import that breaks a rule fails here."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_imports_follow_the_pipeline_layers(monkeypatch, capsys):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "3 kept, 0 broken" in out


def test_a_lower_layer_importing_a_higher_one_is_caught(tmp_path, monkeypatch, capsys):
    """The check has teeth: a copy of the package where the corpora import the model fails."""
    import shutil
    import sys

    from importlinter.cli import lint_imports

    shutil.copytree(ROOT / "fer_lightning", tmp_path / "fer_lightning",
                    ignore=shutil.ignore_patterns("__pycache__"))
    labels = tmp_path / "fer_lightning" / "corpora" / "labels.py"
    labels.write_text(labels.read_text() + "\n\ndef _late():\n    from fer_lightning.models.module import AffectModule\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    for name in [m for m in sys.modules if m == "fer_lightning" or m.startswith("fer_lightning.")]:
        monkeypatch.delitem(sys.modules, name)
    code = lint_imports(config_filename=str(tmp_path / "pyproject.toml"), no_cache=True)
    out = capsys.readouterr().out
    assert code != 0
    assert "fer_lightning.corpora.labels -> fer_lightning.models.module" in out, out
