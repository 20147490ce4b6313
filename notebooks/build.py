"""Build the course notebooks from their sources, and give every notebook the same first cell.

    python notebooks/build.py            # write notebooks/de/*_aufgabe.ipynb and *_loesung.ipynb, refresh setup cells
    python notebooks/build.py --check    # exit 1 when a committed notebook differs from what its source makes (CI)

The German notebooks are written once, as jupytext percent scripts in notebooks/de/src/, and each makes two
notebooks: the *Aufgabe* (what the student starts from) and the *Lösung* (the same with the reference solution).
In a source:

    # >>> LÖSUNG                        the lines up to "# <<< LÖSUNG" are the solution: the Aufgabe gets a
    ...                                 "TODO" comment and `raise NotImplementedError` in their place, at the
    # <<< LÖSUNG                        marker's indentation
    # >>> LÖSUNG (Aufgabe: x = None)    ... or, for code at the top level of a cell, the line given after "Aufgabe:"
    # %% [markdown] tags=["answer"]     a written answer: the Lösung shows it as a sample answer, the Aufgabe an
                                        empty answer cell
    # %% tags=["setup"]                 replaced by the shared setup cell (SETUP below) in both

The setup cell installs tinylm where it is missing, from where notebooks/install-from.txt says (the one setting
every notebook shares; see notebooks/README.md), and says in one sentence when it cannot. The English notebooks
keep their own text; only their first code cell is this same setup cell, in English.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import jupytext
import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "de" / "src"
INSTALL_FROM = HERE / "install-from.txt"

BEGIN = re.compile(r"^(?P<indent>\s*)# >>> LÖSUNG(?: \(Aufgabe: (?P<stub>.*)\))?\s*$")
END = re.compile(r"^\s*# <<< LÖSUNG\s*$")

SETUP = """\
# {comment_setup}
import importlib.util
import os
import sys

# {comment_from}
INSTALL_FROM = os.environ.get("TINYLM_INSTALL_FROM") or {install_from}
if importlib.util.find_spec("tinylm") is None:
    import glob
    import subprocess

    wheels = sorted(glob.glob("tinylm-*.whl"))  # {comment_wheel}
    source = wheels[-1] if wheels else INSTALL_FROM
    requirement = f"tinylm{extras} @ {{source}}" if "://" in source else f"{{source}}{extras}"
    if subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement]).returncode != 0:
        raise SystemExit({failure})
    importlib.invalidate_caches()

{comment_quick}
QUICK = os.environ.get("TINYLM_QUICK", "0") == "1"
OUT = os.environ.get("OUT", {out})  # {comment_out}
print({quick_on} if QUICK else {quick_off}, {outputs}, OUT)
"""

WORDS = {
    "de": {
        "comment_setup": "Einrichtung: installiert tinylm, wo es fehlt (Colab, eine frische Umgebung); sonst "
                         "passiert nichts.",
        "comment_from": "woher tinylm kommt: notebooks/README.md, Abschnitt Installation",
        "comment_wheel": "eine hochgeladene Wheel-Datei neben dem Notebook geht vor",
        "failure": "tinylm ließ sich nicht installieren: lade die Wheel-Datei tinylm-….whl neben das Notebook hoch "
                   "oder setze TINYLM_INSTALL_FROM auf die Adresse, die deine Lehrperson angibt.",
        "comment_quick": "# QUICK (TINYLM_QUICK=1, so läuft es in CI): wenig Text, kleine Modelle, wenige Epochen.\n"
                         "# Jede Zelle läuft, aber die Modelle bleiben schwach.",
        "comment_out": "hierhin schreibt das Notebook seine Läufe",
        "quick_on": "QUICK-Modus: wenig Text, kleine Modelle", "quick_off": "voller Lauf",
        "outputs": "| Ausgaben in",
    },
    "en": {
        "comment_setup": "Setup: installs tinylm where it is missing (Colab, a fresh environment); otherwise it does "
                         "nothing.",
        "comment_from": "where tinylm comes from: notebooks/README.md, section Installing",
        "comment_wheel": "a wheel uploaded next to the notebook comes first",
        "failure": "tinylm could not be installed: upload the wheel tinylm-….whl next to the notebook or set "
                   "TINYLM_INSTALL_FROM to the address your teacher gives.",
        "comment_quick": "# QUICK mode (TINYLM_QUICK=1, what CI runs): a slice of the data, tiny models and few "
                         "epochs.\n# Every cell runs, but the models stay poor.",
        "comment_out": "where this notebook writes its runs",
        "quick_on": "QUICK mode: tiny data and models", "quick_off": "full mode", "outputs": "| outputs in",
    },
}

# Extras each notebook needs (pip install 'tinylm[...]'), by the start of its file name.
EXTRAS = {"00": "", "01": "hf,tracking", "02": "keras", "03": "hf", "04": "lightning",
          # the English notebooks
          "01_characters": "hf", "02_final": "hf,tracking", "03_news": "hf", "04_word": "hf",
          "05_shakespeare": "lightning"}


def install_from() -> str:
    """The one setting: where every notebook installs tinylm from (the first line of install-from.txt that is not
    a comment)."""
    lines = [line.strip() for line in INSTALL_FROM.read_text(encoding="utf-8").splitlines()]
    return next(line for line in lines if line and not line.startswith("#"))


def _quoted(text: str) -> str:
    """A Python string literal of `text` in double quotes, cut into pieces of at most 80 characters inside
    parentheses when it is long (the cell keeps to 120 columns)."""
    if len(text) <= 80:
        return json.dumps(text, ensure_ascii=False)
    words, pieces, line = text.split(" "), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > 80:
            pieces.append(line + " ")
            line = word
        else:
            line = f"{line} {word}" if line else word
    pieces.append(line)
    return "\n                         ".join(json.dumps(p, ensure_ascii=False) for p in pieces)


def setup_cell(language: str, stem: str) -> str:
    extras = next(value for key, value in sorted(EXTRAS.items(), key=lambda kv: -len(kv[0])) if stem.startswith(key))
    words = WORDS[language]
    literal = {key: json.dumps(words[key], ensure_ascii=False) for key in ("quick_on", "quick_off", "outputs")}
    literal["failure"] = _quoted(words["failure"])
    return SETUP.format(install_from=json.dumps(install_from()), extras=f"[{extras}]" if extras else "",
                        out=json.dumps(f"runs/notebooks/{stem}"),
                        **{**words, **literal}).rstrip("\n")


def _without_solutions(source: str, task: str) -> str:
    """A code cell's source with each solution block replaced by its stub."""
    out, inside = [], False
    for line in source.splitlines():
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ValueError(f"nested solution block in {task}")
            inside = True
            indent = begin["indent"]
            out.append(f"{indent}# TODO: deine Lösung")
            out.append(indent + (begin["stub"] or "raise NotImplementedError(\"noch nicht bearbeitet\")"))
        elif END.match(line):
            if not inside:
                raise ValueError(f"'# <<< LÖSUNG' without a beginning in {task}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"a solution block in {task} is not closed")
    return "\n".join(out)


def _only_solutions(source: str) -> str:
    """A code cell's source with the markers taken out (the Lösung)."""
    return "\n".join(line for line in source.splitlines() if not (BEGIN.match(line) or END.match(line)))


ANSWER_PLACEHOLDER = "**Deine Antwort:**\n\n_…_"
VARIANT_LINE = {"aufgabe": "> **Aufgabe.** Schreibe den Code in die Zellen mit `TODO` und führe danach die "
                           "Prüfzelle aus. Die Lösung steht in `{other}`.",
                "loesung": "> **Lösung** mit Musterantworten. Die Aufgabe dazu steht in `{other}`."}


def build(source: Path, variant: str) -> nbformat.NotebookNode:
    """The Aufgabe or the Lösung (`variant`) of one source."""
    notebook = jupytext.read(source, fmt="py:percent")
    stem = source.stem
    other = f"{stem}_{'loesung' if variant == 'aufgabe' else 'aufgabe'}.ipynb"
    cells = []
    for index, cell in enumerate(notebook.cells):
        tags = cell.metadata.get("tags", [])
        text = cell.source
        if "setup" in tags:
            text = setup_cell("de", stem)
        elif cell.cell_type == "code":
            text = _without_solutions(text, f"{source.name} cell {index}") if variant == "aufgabe" \
                else _only_solutions(text)
        elif "answer" in tags:
            text = ANSWER_PLACEHOLDER if variant == "aufgabe" else "**Musterantwort:** " + text
        if index == 0 and cell.cell_type == "markdown":
            text = text.rstrip() + "\n\n" + VARIANT_LINE[variant].format(other=other)
        new = (nbformat.v4.new_code_cell(text) if cell.cell_type == "code"
               else nbformat.v4.new_markdown_cell(text))
        new.metadata = {"tags": tags} if tags else {}
        cells.append(new)
    out = nbformat.v4.new_notebook(cells=cells)
    out.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                    "language_info": {"name": "python"}}
    return out


def _text(notebook: nbformat.NotebookNode) -> str:
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index:02d}"  # fixed ids: the same source always makes the same file
    return nbformat.writes(notebook, version=4) + "\n"


def outputs() -> dict[Path, str]:
    """Every file the build writes, with its text."""
    files = {}
    for source in sorted(SOURCES.glob("*.py")):
        for variant in ("aufgabe", "loesung"):
            files[HERE / "de" / f"{source.stem}_{variant}.ipynb"] = _text(build(source, variant))
    for path in sorted(HERE.glob("*.ipynb")):  # the English notebooks: their setup cell only
        notebook = nbformat.read(path, as_version=4)
        first = next(cell for cell in notebook.cells if cell.cell_type == "code")
        first.source = setup_cell("en", path.stem)
        files[path] = _text(notebook)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a notebook is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path.relative_to(HERE.parent))
            if not args.check:
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print("out of date (run python notebooks/build.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    print(f"{'stale' if args.check else 'written'}: {len(stale)} notebook(s)" if stale else "all notebooks up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
