"""The course notebooks (notebooks/*.ipynb): each is executed top to bottom in QUICK mode by a fresh Jupyter
kernel (nbclient, kernel `python3` of this environment), offline, and must finish without an error; the
committed files carry no outputs and use tinylm's Python API rather than its command line.

The notebooks start together, two at a time (each kernel uses one CPU thread), so the file takes about as long as
its longest notebooks rather than their sum. Each test prints its notebook's execution time (pytest -s shows it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
LONGEST_FIRST = ["05", "02", "04", "03", "01"]  # start order: the short notebooks fill the gaps at the end
TIMEOUT = 600  # per cell

pytestmark = pytest.mark.slow


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_every_exercise_has_a_notebook():
    names = [p.stem for p in NOTEBOOKS]
    assert names == ["01_characters_to_lstm", "02_final_project_gpt", "03_news_titles", "04_word_level",
                     "05_shakespeare_exercise"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_through_the_python_api(path):
    cells = _cells(path)
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    for cell in code:
        assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name} holds outputs"
    sources = ["".join(cell["source"]) for cell in code]
    # The first cell installs tinylm in Colab (only when it is missing) and defines the QUICK switch.
    assert "find_spec(\"tinylm\") is None" in sources[0] and "%pip install" in sources[0]
    assert "QUICK = os.environ.get(\"TINYLM_QUICK\", \"0\") == \"1\"" in sources[0]
    # The exercises use the Python API: no shell escapes (`!tinylm ...`) anywhere.
    assert not [line for s in sources for line in s.splitlines() if line.lstrip().startswith("!")]
    assert any("import tinylm" in s for s in sources)


@pytest.fixture(scope="session")
def executed(tmp_path_factory, data_dir) -> Iterator[dict[str, Future]]:
    """Execute every notebook (two at a time) in its own folder; stem -> future of (notebook, seconds)."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
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
        folder = root / path.stem
        folder.mkdir()
        notebook = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=TIMEOUT,
                                         resources={"metadata": {"path": str(folder)}})
        started = time.perf_counter()
        client.execute(env=env)
        return notebook, time.perf_counter() - started, folder

    pool = ThreadPoolExecutor(max_workers=2)
    futures = {p.stem: pool.submit(run, p) for p in sorted(NOTEBOOKS, key=lambda p: LONGEST_FIRST.index(p.stem[:2]))}
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
