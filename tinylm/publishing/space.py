"""A Hugging Face Space (Gradio SDK) that serves tinylm's web playground for one or more runs.

    build_space(["runs/lstm", "alice/tiny-gpt"], "space-demo", repo_id="alice/demo")  # the folder, written locally
    push_space(["runs/lstm"], "alice/demo")                                          # created and uploaded; its URL

The folder (the same bytes locally and on the Hub):

    README.md          the Space's YAML metadata (sdk: gradio, pinned sdk_version, ...) and the models it serves
    app.py             builds the playground (tinylm.lab.playground.serve) from runs/ and launches it
    requirements.txt   tinylm, torch (CPU build) and the packages the app imports, pinned to the versions here
    runs/<name>/       what loading each run needs: config, weights, tokenizer files (no checkpoint, no records)

Finding runs (local folders or Hub ids), the Hub endpoint, the token and the Hub's errors are
tinylm.publishing.hub's; writing the folder whole is tinylm.folders'. This module only says what a Space holds.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from ..errors import TinyLMError
from ..folders import OutputKind, check_apart, writing_output
from ..io import as_path, write_text
from ..loading import LoadedModel, load_run
from ..models import family_of
from ..run.layout import METRICS, SAMPLES, SUMMARY
from .card import RUN_FILES, import_huggingface_hub, markdown_table
from .hub import check_pushable, hub_endpoint, hub_errors, is_hub_name, locate_run

SPACE_ENTRIES = frozenset({"README.md", "app.py", "requirements.txt", "runs"})
RUNS_FOLDER = "runs"
# What loading a run reads: the run's files less its records (the README quotes them; the app never reads them).
LOADING_FILES = [name for name in RUN_FILES if name not in (METRICS, SAMPLES, SUMMARY)]
# Imported by the playground itself, beyond tinylm's own dependencies (huggingface_hub: finding runs).
APP_PACKAGES = ["gradio", "pandas", "huggingface_hub"]
# PyTorch's CPU wheels: a Space's free hardware has no GPU, and the default (CUDA) wheel is ten times larger.
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
SHORT_DESCRIPTION_CHARS = 60  # the Hub's limit


def _is_space_folder(folder: Path) -> bool:
    return (folder / "app.py").is_file() and (folder / "README.md").is_file() and (folder / RUNS_FOLDER).is_dir()


SPACE_FOLDER = OutputKind("a Space folder written by tinylm space", _is_space_folder, SPACE_ENTRIES,
                          held="a Space folder")
"""The folder `tinylm space` writes (tinylm.folders): only an earlier one is replaced, and only with --overwrite."""


@dataclass(frozen=True)
class SpaceRun:
    """One run the Space serves."""

    name: str
    """Its folder in runs/, which is also its column's heading in the playground."""
    run_dir: Path
    """Where it is read from (a local run, or the Hugging Face cache)."""
    hub_id: str | None
    """The Hub model repo it was given as (the README's `models:`), None for a local run."""
    model: LoadedModel


# -- the runs ------------------------------------------------------------------------------------------
def gather_runs(runs: Sequence[str | Path]) -> list[SpaceRun]:
    """Each run found (locally or on the Hub) and loaded, so a run the Space could not load fails here, before
    anything is written or uploaded; names made unique (runs/<name>/ in the folder)."""
    runs = [runs] if isinstance(runs, (str, Path)) else runs  # one run, given alone
    if not runs:
        raise TinyLMError("give at least one run directory (or Hub id) for the Space to serve")
    gathered, taken = [], set()
    for given in runs:
        path = as_path(given, "run")
        run_dir, from_hub = locate_run(path)
        check_pushable(run_dir)  # a folder that is not a trained run says so in one line
        hub_id = str(given) if from_hub and not path.is_dir() else None
        name = _unique(hub_id.split("/")[1] if hub_id else path.resolve().name, taken)
        gathered.append(SpaceRun(name, run_dir, hub_id, load_run(run_dir, from_hub=from_hub)))
    return gathered


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or name-2, name-3, ... when an earlier run took it (two runs both called `run`)."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


# -- the folder's files ----------------------------------------------------------------------------------
def app_source(runs: Sequence[SpaceRun], repo_id: str) -> str:
    """app.py: the playground for the folder's runs. Spaces start it as `python app.py` with GRADIO_SERVER_NAME
    and GRADIO_SERVER_PORT set; locally it listens on 127.0.0.1 only, as `tinylm serve` does."""
    names = json.dumps([run.name for run in runs], ensure_ascii=False)
    return f'''"""The tinylm playground for {repo_id}: a Hugging Face Space written by `tinylm space`.

Locally: pip install -r requirements.txt && python app.py   (http://127.0.0.1:7860, or the next free port)
On a Space, GRADIO_SERVER_NAME and GRADIO_SERVER_PORT say where to listen.
"""

import os
from pathlib import Path

from tinylm.lab.playground import serve

RUNS = {names}  # folders of runs/, one column each, in this order
HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    port = os.environ.get("GRADIO_SERVER_PORT")
    serve([HERE / "{RUNS_FOLDER}" / name for name in RUNS], host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
          port=int(port) if port else None)
'''


def _installed(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise TinyLMError(f"the Space pins the versions installed here, and {package} is not installed: "
                          f"pip install 'tinylm[app]'") from None


def _tinylm_dependencies() -> list[str]:
    """The names of tinylm's own (not optional) dependencies, as its installed metadata lists them."""
    requires = importlib.metadata.requires("tinylm") or []
    return [re.match(r"[A-Za-z0-9._-]+", req).group(0) for req in requires if "extra ==" not in req]


def requirements(runs: Sequence[SpaceRun]) -> str:
    """requirements.txt: tinylm at this version, torch's CPU build of the installed release, and every other
    package the app imports at the version installed here (what this folder was tested with)."""
    try:
        packages = _tinylm_dependencies()
    except importlib.metadata.PackageNotFoundError:
        raise TinyLMError("tinylm is not installed as a package, so its dependencies are unknown: pip install "
                          "-e . first") from None
    packages += APP_PACKAGES + (["transformers"] if any(run.model.module.wraps_transformers for run in runs) else [])
    others = sorted({name.lower().replace("_", "-") for name in packages} - {"torch"})
    torch = _installed("torch").split("+")[0]  # the local label (+cpu, +cu128) names a build, not a release
    lines = ["# Pinned to what `tinylm space` was run with.", f"--extra-index-url {TORCH_CPU_INDEX}",
             f"tinylm=={__version__}", f"torch=={torch}+cpu", *(f"{name}=={_installed(name)}" for name in others)]
    return "\n".join(lines) + "\n"


def readme(runs: Sequence[SpaceRun], repo_id: str, license: str = "mit") -> str:
    """README.md: the Space's YAML metadata (huggingface_hub's SpaceCardData), then the models and how to run
    the folder locally."""
    hub = import_huggingface_hub()
    title = repo_id.split("/")[1]
    short = f"tinylm playground: {', '.join(run.name for run in runs)}"
    if len(short) > SHORT_DESCRIPTION_CHARS:
        short = short[:SHORT_DESCRIPTION_CHARS - 1] + "…"
    tags = ["tinylm", "text-generation", "playground", *(run.model.module.tag() for run in runs)]
    metadata = hub.SpaceCardData(
        title=title, emoji="🔤", colorFrom="indigo", colorTo="blue", sdk="gradio", sdk_version=_installed("gradio"),
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}", app_file="app.py", pinned=False,
        license=license, tags=list(dict.fromkeys(tags)), short_description=short,
        models=[run.hub_id for run in runs if run.hub_id] or None)
    count = f"{len(runs)} small language models" if len(runs) > 1 else "a small language model"
    return "\n".join([
        f"---\n{metadata.to_yaml()}\n---", "", f"# {title}", "",
        f"A playground for {count} made with tinylm: type a prompt, choose "
        "the sampling settings and watch each model continue it, with its most likely next tokens.", "",
        markdown_table(["model", "family", "architecture", "parameters", "best validation loss"],
               [_model_row(run) for run in runs]), "",
        "## Run it locally", "",
        "```bash", "pip install -r requirements.txt", "python app.py     # http://127.0.0.1:7860", "```", "",
        f"The models are in `{RUNS_FOLDER}/`; `tinylm sample {RUNS_FOLDER}/NAME` samples one from the command line.",
        "",
    ])


def _model_row(run: SpaceRun) -> list[str]:
    """The README's row of a run: its name (and Hub id), family, architecture, size and best validation loss."""
    best = run.model.best_record()  # the epoch whose weights were kept
    loss = (f"{best['val_loss']:.4f} (perplexity {best['val_perplexity']:.2f}, epoch {best['epoch']})"
            if best else "not recorded")
    name = f"{run.name} (`{run.hub_id}`)" if run.hub_id else run.name
    return [name, family_of(run.model.config.model), run.model.module.describe(),
            f"{run.model.num_parameters():,}", loss]


def write_space_folder(runs: Sequence[SpaceRun], folder: Path, repo_id: str, license: str = "mit") -> None:
    """Fill the empty (or absent) `folder` with exactly what the Space holds."""
    for run in runs:
        target = folder / RUNS_FOLDER / run.name
        target.mkdir(parents=True)
        for name in LOADING_FILES:
            if (run.run_dir / name).is_file():
                shutil.copyfile(run.run_dir / name, target / name)
    write_text(folder / "app.py", app_source(runs, repo_id))
    write_text(folder / "requirements.txt", requirements(runs))
    write_text(folder / "README.md", readme(runs, repo_id, license))


# -- the public API ----------------------------------------------------------------------------------------
def check_repo_id(repo_id: str) -> None:
    if not isinstance(repo_id, str) or not is_hub_name(repo_id):
        raise TinyLMError(f"--repo {repo_id!r} is not a Hub repo id; use USER/NAME (letters, digits, - _ .)")


def build_space(runs: Sequence[str | Path], out: str | Path, *, repo_id: str, overwrite: bool = False,
                license: str = "mit") -> Path:
    """Write the Space folder for `runs` (run directories or Hub ids) to `out` and return its path; nothing is
    uploaded. `out` is replaced only when it holds an earlier Space folder and `overwrite` is set."""
    check_repo_id(repo_id)
    out = as_path(out, "out")
    SPACE_FOLDER.check(out, overwrite)  # before the runs load: a refused folder fails at once
    gathered = gather_runs(runs)
    for run in gathered:  # replacing `out` must never delete a run it reads
        check_apart(out, run.run_dir, "--out", "the run")
    with writing_output(SPACE_FOLDER, out, overwrite=overwrite) as staging:
        write_space_folder(gathered, staging, repo_id, license)
    return out


def push_space(runs: Sequence[str | Path], repo_id: str, private: bool = False, *, token: str | None = None,
               out: str | Path | None = None, overwrite: bool = False, license: str = "mit") -> str:
    """Create the Space `repo_id` (Gradio SDK; private with `private`, an existing one keeps its visibility),
    upload the folder for `runs` in one commit and return the Space's URL. The folder is written in a
    temporary folder, or kept in `out`. The token is `token`, else HF_TOKEN, else `hf auth login`'s."""
    check_repo_id(repo_id)
    hub = import_huggingface_hub()
    token = token or hub.get_token()
    if not token:
        raise TinyLMError("no Hugging Face token: pass --token, set HF_TOKEN, or log in with `hf auth login`")
    if out is not None:
        return _upload(build_space(runs, out, repo_id=repo_id, overwrite=overwrite, license=license), repo_id,
                       private, token)
    with tempfile.TemporaryDirectory(prefix="tinylm-space-") as tmp:
        return _upload(build_space(runs, Path(tmp) / "space", repo_id=repo_id, license=license), repo_id,
                       private, token)


def _upload(folder: Path, repo_id: str, private: bool, token: str) -> str:
    """Create the Space (if new) and upload `folder` to it as one commit; its URL."""
    hub = import_huggingface_hub()
    endpoint = hub_endpoint()
    api = hub.HfApi(endpoint=endpoint, token=token)
    with hub_errors(repo_id, endpoint, f"push the Space {repo_id}", f"cannot push: no Space {repo_id} on {endpoint}"):
        url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=str(folder),
                          commit_message="Upload the tinylm playground (tinylm space)")
    return str(url)
