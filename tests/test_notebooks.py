"""The notebooks: the English ones (notebooks/*.ipynb) and the German course (notebooks/de/, an Aufgabe and a
Lösung per exercise, built from notebooks/de/src/ by notebooks/build.py). Each is executed top to bottom in QUICK
mode by a fresh Jupyter kernel (nbclient, kernel `python3` of this environment), offline, and must finish without
an error; the committed files carry no outputs and are what their sources build. Every Lösung's checks are green;
every Aufgabe's checks say "noch nicht bearbeitet" with a hint, and it still runs to its end.

The notebooks start together, two at a time (each kernel uses one CPU thread), so the file takes about as long as
its longest notebooks rather than their sum. What each notebook's checks said is printed at the end of the run
(the "course notebooks" section of the summary).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
GERMAN = sorted((REPO / "notebooks" / "de").glob("*.ipynb"))
LONGEST_FIRST = ["de/02", "de/04", "05", "02", "de/01", "04", "03", "de/03", "de/00", "01"]  # start order
TIMEOUT = 600  # per cell
CHECK_CALL = re.compile(r"course\.check\(")

pytestmark = pytest.mark.slow


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_every_exercise_has_a_notebook():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_characters_to_lstm", "02_final_project_gpt", "03_news_titles", "04_word_level",
                     "05_shakespeare_exercise"]


@pytest.mark.parametrize("path", NOTEBOOKS + GERMAN, ids=lambda p: p.stem)
def test_committed_without_outputs_and_through_the_python_api(path):
    cells = _cells(path)
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} holds outputs"
    sources = ["".join(cell["source"]) for cell in code]
    # The first cell installs tinylm where it is missing, from the one shared setting, and defines QUICK.
    assert "find_spec(\"tinylm\") is None" in sources[0] and "INSTALL_FROM" in sources[0]
    assert "raise SystemExit(" in sources[0]  # cannot install: one sentence, not an error three cells later
    assert "QUICK = os.environ.get(\"TINYLM_QUICK\", \"0\") == \"1\"" in sources[0]
    # The exercises use the Python API: no shell escapes (`!tinylm ...`) anywhere.
    assert not [line for s in sources for line in s.splitlines() if line.lstrip().startswith("!")]
    assert any(re.search(r"^(import tinylm|from tinylm\b)", s, re.M) for s in sources)


@pytest.fixture(scope="session")
def executed(tmp_path_factory, data_dir) -> Iterator[dict[str, Future]]:
    """Execute every notebook (two at a time, each by its own `jupyter execute` process, so that no two kernels
    share a client) in its own folder; stem -> future of (notebook, seconds, folder)."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    root = tmp_path_factory.mktemp("notebooks")
    env = {
        **os.environ,
        "TINYLM_QUICK": "1",
        "TINYLM_DATA_DIR": str(data_dir),
        "TINYLM_CACHE_DIR": str(root / "cache"),
        "TINYLM_OFFLINE": "1",  # no network: W&B offline, the Hub only as a dry run, Gutenberg from a stand-in
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(root / "hf"),
        "OMP_NUM_THREADS": "1",  # tiny models: one thread each is faster than two fighting over a shared CPU
    }
    for name in ("HF_REPO", "TITLES", "OUT", "WANDB_DIR"):  # (W&B then writes into the run directory)
        env.pop(name, None)

    def run(path: Path):
        folder = root / path.parent.name / path.stem
        folder.mkdir(parents=True)
        copy = folder / path.name  # executed where it lies: its relative paths start in its own folder
        copy.write_bytes(path.read_bytes())
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", "from nbclient.cli import main; main()", str(copy),
                                 "--output=executed", f"--timeout={TIMEOUT}", "--kernel_name=python3"], cwd=folder,
                                env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise AssertionError(f"{path.name} failed:\n{result.stderr[-6000:]}")
        return nbformat.read(folder / "executed.ipynb", as_version=4), seconds, folder

    def order(path: Path) -> int:
        key = f"{'de/' if path.parent.name == 'de' else ''}{path.stem[:2]}"
        return LONGEST_FIRST.index(key)

    pool = ThreadPoolExecutor(max_workers=2)
    futures = {p.stem: pool.submit(run, p) for p in sorted(NOTEBOOKS + GERMAN, key=order)}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


def _outputs(notebook) -> tuple[str, list[str]]:
    """All the text the notebook printed, and the MIME types of what it displayed."""
    text, shown = [], []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                text.append(output["text"])
            elif "data" in output:
                shown.extend(output["data"])
    return "".join(text), shown


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_in_quick_mode(path, executed):
    notebook, seconds, folder = executed[path.stem].result()
    print(f"{path.name}: executed in {seconds:.1f} s (QUICK mode, fresh kernel)")
    text, shown = _outputs(notebook)
    assert "QUICK mode" in text
    assert "image/png" in shown  # an inline plot rendered
    assert "application/vnd.jupyter.widget-view+json" in shown  # progress bars as Jupyter widgets
    runs = folder / "runs" / "notebooks" / path.stem
    import tinylm

    if path.stem == "01_characters_to_lstm":
        assert "memorised, character for character: True" in text
    elif path.stem == "02_final_project_gpt":
        run = tinylm.load(runs / "gpt")
        assert len(run.metrics) >= 3 and run.metrics[-1]["val_loss"] < run.metrics[0]["val_loss"]
        assert (runs / "hub" / "README.md").is_file() and list((runs / "gpt" / "wandb").glob("offline-run-*"))
        assert tinylm.load(runs / "gpt2-finetuned").config.model.__class__.__name__ == "HFCausalLMConfig"
    elif path.stem == "03_news_titles":
        assert "every <pad> input has an IGNORE target: True" in text
        assert all(f"T = {t}:" in text for t in (0.3, 0.6, 1.0, 1.4, 1.8))
    elif path.stem == "04_word_level":
        assert all(f"--- {name}" in text for name in ("Markov", "LSTM", "GPT-2 fine-tuned"))
    elif path.stem == "05_shakespeare_exercise":
        run = tinylm.load(runs / "shakespeare")
        assert (run.config.data.target, run.config.data.block_size, run.config.data.stride) == ("last", 40, 3)
        assert "Measured: words" in text  # the temperature answer comes from the samples, not a claim
        report = json.loads((runs / "shakespeare" / "temperature" / "temperature.json").read_text())
        assert len(report["stats"]) == 7
        assert tinylm.load(runs / "book").config.data.strip_gutenberg is True  # the offline stand-in was cut


# -- the German course ------------------------------------------------------------------------------------
def test_every_exercise_has_an_aufgabe_and_a_loesung_built_from_its_source():
    sources = sorted(p.stem for p in (REPO / "notebooks" / "de" / "src").glob("*.py"))
    assert [p.stem[:2] for p in (REPO / "notebooks" / "de" / "src").glob("*.py")] and \
        sorted(s[:2] for s in sources) == ["00", "01", "02", "03", "04"]
    assert [p.stem for p in GERMAN] == sorted(f"{s}_{v}" for s in sources for v in ("aufgabe", "loesung"))
    result = subprocess.run([sys.executable, str(REPO / "notebooks" / "build.py"), "--check"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr  # a notebook edited by hand, or a source not built again


def _check_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in ("✓", "✗", "…")]


def _check_reports(path: Path, executed) -> tuple[list[str], int, float, object]:
    """(the check reports a German notebook printed, how many course.check calls it has, seconds, notebook)."""
    notebook, seconds, _ = executed[path.stem].result()
    text, _ = _outputs(notebook)
    calls = sum(len(CHECK_CALL.findall("".join(c.source))) for c in notebook.cells if c.cell_type == "code")
    lines = _check_lines(text)
    assert calls and len(lines) == calls, f"{len(lines)} check reports for {calls} checks:\n{text}"
    assert not _errors(notebook)  # no traceback: every cell after an open or wrong task still runs
    return lines, calls, seconds, notebook


@pytest.mark.parametrize("path", [p for p in GERMAN if p.stem.endswith("_loesung")], ids=lambda p: p.stem)
def test_every_loesung_runs_with_its_checks_green(path, executed, course_summary):
    lines, calls, seconds, _ = _check_reports(path, executed)
    green = all(line.startswith("✓") and line.endswith(": richtig") for line in lines)
    course_summary.append(f"{path.stem}: {calls} checks, all green: {green} ({seconds:.0f} s, QUICK)")
    assert green, "\n".join(lines)


@pytest.mark.parametrize("path", [p for p in GERMAN if p.stem.endswith("_aufgabe")], ids=lambda p: p.stem)
def test_every_aufgabe_runs_to_its_end_with_its_checks_not_done_yet(path, executed, course_summary):
    lines, calls, seconds, notebook = _check_reports(path, executed)
    open_ = all(line.startswith("…") and "noch nicht bearbeitet. Tipp: " in line for line in lines)
    course_summary.append(f"{path.stem}: {calls} checks, each 'noch nicht bearbeitet' with a hint: {open_} "
                          f"({seconds:.0f} s, QUICK)")
    assert open_, "\n".join(lines)
    assert "TODO: deine Lösung" in "".join("".join(c.source) for c in notebook.cells)


def _errors(notebook) -> list[str]:
    return [f"{out['ename']}: {out['evalue']}" for cell in notebook.cells for out in cell.get("outputs", [])
            if out["output_type"] == "error"]
