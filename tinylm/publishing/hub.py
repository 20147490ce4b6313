"""Publishing runs on the Hugging Face Hub, and loading them back.

    tinylm.push("runs/lstm", "alice/shakespeare-lstm")                  # create the repo, upload; its URL
    tinylm.push("runs/lstm", "alice/shakespeare-lstm", dry_run="out/")  # the same folder, written locally
    tinylm.load("alice/shakespeare-lstm")                               # download (or use the cache), load

A pushed repo (and a --dry-run folder, byte for byte) holds:

    README.md          the model card (tinylm.publishing.card): YAML metadata (license, tags, datasets, model-index)
                       + a description
    loss.png           the loss curves the card shows
    config.json, model.safetensors, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
    metrics.jsonl, samples.jsonl, summary.json
                       the run directory's files (not checkpoint/: optimizer state is for --resume only)

GPT runs are also exported to the transformers GPT-2 format (tinylm.publishing.export). The Hub's widgets,
`pipeline("text-generation", model="alice/name")` and `AutoModelForCausalLM` read the repo's root, so the
export takes the root and the run's other files move to the subfolder tinylm/. The weights are uploaded once,
GPT-2's at the root: loading the repo with tinylm rebuilds tinylm's weights from them (the exact inverse of
the export, tinylm.publishing.export.state_dict_from_gpt2) into a run folder in tinylm's cache, keyed by repo and commit
(by content for a local folder), made once and reused. Repos pushed before kept tinylm/model.safetensors as
well: it is used when it is there. A fine-tune run is a transformers folder already (config.json is
transformers', tinylm's is tinylm_config.json beside it): its files all go to the root, with
generation_config.json and the base's tokenizer files. `run_dir_of` and `download_run` find the run in each
layout, so `tinylm.load("alice/name")` loads every family in one call.

huggingface_hub is imported only when something is published or downloaded.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import TinyLMError
from ..folders import OutputKind
from ..io import as_path, write_text
from ..loading import LoadedModel, load_run
from ..run.layout import (
    ADAPTER,
    CONFIG,
    LOSS_PLOT,
    TINYLM_CONFIG,
    WEIGHTS,
    is_run,
    is_run_config,
    run_config_file,
)

# The card's names (publishing/card.py) are imported here too, so that they stay importable from this module.
from .card import (  # noqa: F401
    _FILE_ROLES,
    CARD_TEMPERATURES,
    CORPORA,
    REPO_ID,
    RUN_FILES,
    RUN_SUBFOLDER,
    TOKENIZER_LEVELS,
    CardFacts,
    CardInfo,
    _corpus,
    _epochs_line,
    _exports_transformers,
    _fence,
    _file_role,
    _hub_base_model,
    _repo_files,
    _wandb_line,
    build_card,
    card_facts,
    import_huggingface_hub,
    markdown_table,
)

# The run's files tinylm.load cannot do without (RUN_FILES, all a repo carries, is in card.py, whose card lists them).
REQUIRED = [CONFIG, WEIGHTS, "tokenizer.json"]
REBUILT_RUNS = "rebuilt-runs"  # in tinylm's cache: GPT repos' runs with tinylm's weights rebuilt from GPT-2's


def hub_endpoint() -> str:
    # huggingface_hub reads HF_ENDPOINT once, when imported; reading it here too honours a value set later.
    import_huggingface_hub()  # a missing package is a one-line error
    constants = importlib.import_module("huggingface_hub.constants")  # not an attribute of the package in 1.x+
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _run_folder(folder: Path) -> Path:
    """Where a pushed repo or --dry-run folder keeps tinylm's files: the folder itself, or its tinylm/
    subfolder (GPT runs, whose root holds the transformers export)."""
    if not is_run(folder) and is_run(folder / RUN_SUBFOLDER):
        return folder / RUN_SUBFOLDER
    return folder


def _holds_gpt2_weights(folder: Path) -> bool:
    """Whether `folder` is a GPT repo's root: a GPT-2 config.json (not a tinylm run's) beside the weights."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "gpt2" and (folder / WEIGHTS).is_file()


def run_dir_of(folder: str | Path) -> Path:
    """The run directory that loads the tinylm run of a pushed repo or --dry-run folder (or of its tinylm/
    subfolder): the folder itself, its tinylm/ subfolder when that holds tinylm's weights (GPT repos pushed
    before the weights were kept once), or a GPT repo's run with its weights rebuilt from the root's GPT-2
    weights in tinylm's cache."""
    run = _run_folder(Path(folder))
    root = run.parent
    if (run.name == RUN_SUBFOLDER and not (run / WEIGHTS).is_file() and is_run(run)
            and _holds_gpt2_weights(root)):
        key = _content_key([root / WEIGHTS, *(run / name for name in RUN_FILES)])
        # A snapshot in the Hugging Face cache stays a stranger's run once rebuilt (see is_rebuilt_from_hub).
        origin = "hub" if is_downloaded(root) else "local"
        return _rebuilt_run(root / WEIGHTS, run, _rebuilt_runs() / origin / key)
    return run


# -- finding a run: a local folder, a pushed folder, or a Hub repo id ------------------------------------------
def is_hub_name(name: str, owner_required: bool = True) -> bool:
    """Whether `name` reads as a Hub repo id (USER/NAME; with `owner_required=False` a bare NAME like gpt2 too)."""
    return bool(REPO_ID.fullmatch(name) or (not owner_required and REPO_ID.fullmatch(f"owner/{name}"))) \
        and len(name) <= 96


def _looks_like_hub_id(name: str) -> bool:
    """USER/NAME that is not a mistyped local path: not runs/NAME (where runs go without --out), and USER not a
    local folder."""
    if not is_hub_name(name):
        return False
    first = name.split("/", 1)[0]
    return first != "runs" and not Path(first).is_dir()


def locate_run(name: str | Path) -> tuple[Path, bool]:
    """(the local run directory, whether it came from the Hub) of a run directory, a folder written by `tinylm
    push` or `--dry-run` (or its tinylm/ subfolder), or a Hub repo id USER/NAME (downloaded to the HF cache)."""
    path = Path(name)
    if path.is_dir():
        run_dir = run_dir_of(path)  # a GPT run's pushed or dry-run folder keeps the run in tinylm/
        return run_dir, is_downloaded(run_dir)
    if path.exists():
        raise TinyLMError(f"{name} is not a run directory (it is a file)")
    if _looks_like_hub_id(str(name)):
        return download_run(str(name)), True
    raise TinyLMError(f"run directory {name} does not exist")


def load(run: str | Path, device: str = "cpu", precision: str = "auto") -> LoadedModel:
    """Load a run in one call: a run directory (config.json, tokenizer.json, model.safetensors), a folder
    written by `tinylm push --dry-run`, or a Hub repo id USER/NAME (the Hub id is resolved first, then the
    local folder is loaded by tinylm.loading.load_run). `device` as in tinylm.machine.devices.resolve_device
    ("auto" for the fastest there is); `precision` is what generation uses unless a call says otherwise."""
    from ..machine.devices import check_generation_precision, resolve_device

    check_generation_precision(precision, resolve_device(device))  # a bad choice fails before any download
    run_dir, from_hub = locate_run(as_path(run, "run"))
    return load_run(run_dir, device=device, precision=precision, from_hub=from_hub)


def is_downloaded(run_dir: Path) -> bool:
    """Whether `run_dir` came from the Hub (it lies in the Hugging Face cache, or is a GPT repo's run rebuilt in
    tinylm's cache), so its config is a stranger's."""
    if is_rebuilt_from_hub(run_dir):
        return True
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return False
    return Path(HF_HUB_CACHE).resolve() in Path(run_dir).resolve().parents


# -- GPT repos: tinylm's weights rebuilt from the root's GPT-2 weights ----------------------------------
def _rebuilt_runs() -> Path:
    from ..machine.store import cache_dir  # TINYLM_CACHE_DIR, else ~/.cache/tinylm

    return cache_dir() / REBUILT_RUNS


def is_rebuilt_from_hub(path: str | Path) -> bool:
    """Whether `path` is a run rebuilt from a downloaded GPT repo (its config is a stranger's, as in the
    Hugging Face cache: see is_downloaded)."""
    return (_rebuilt_runs() / "hub").resolve() in Path(path).resolve().parents


def _content_key(files: list[Path]) -> str:
    """A name for the rebuilt run of a local folder: the digest of the files it is made from, so a folder
    written again (a new --dry-run) is rebuilt again."""
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:32]


def _rebuilt_run(gpt2_weights: Path | None, run_files: Path, target: Path) -> Path:
    """`target`, a run directory: the files of `run_files` (tinylm's config, tokenizer and metadata, no
    weights) and tinylm's weights rebuilt from the GPT-2 weights file `gpt2_weights` (None: `target` exists
    already). Made once, then reused: written whole by tinylm.folders' rules while held; a second process that
    wants it at the same time waits for the first, then finds it made."""
    if (target / WEIGHTS).is_file():
        return target
    from ..config import RunConfig
    from ..folders import hold, writing_folder
    from ..models import build_model
    from ..models.weights import save_weights
    from .export import gpt_from_gpt2_file

    config = RunConfig.load(run_files / CONFIG)
    model = build_model(config.model)
    if not model.exports_to_transformers:
        raise TinyLMError(f"{run_files} has no {WEIGHTS} and its model is not a GPT whose weights the root's "
                          f"GPT-2 weights hold")
    gpt_from_gpt2_file(gpt2_weights, model)
    try:
        with hold(target, wait=True):
            if (target / WEIGHTS).is_file():  # another process made it while this one waited
                return target
            with writing_folder(target) as staging:
                for name in RUN_FILES:
                    if name != WEIGHTS and (run_files / name).is_file():
                        shutil.copyfile(run_files / name, staging / name)
                save_weights(model, staging / WEIGHTS)
    except OSError as e:
        raise TinyLMError(f"cannot write tinylm's cache {target.parent} ({e.strerror or e}); set "
                          f"TINYLM_CACHE_DIR to a writable folder") from None
    return target


# -- the model card (publishing/card.py gathers its facts and builds it) --------------------------------------
def model_card(run_dir: str | Path, repo_id: str, info: CardInfo | None = None, *, transformers: bool = False,
               files: list[str] | None = None) -> str:
    """README.md for the run in `run_dir` published as `repo_id`: YAML metadata, then the description. `info`:
    what the user adds (CardInfo); `files`: the repo's files, listed in the card (default: what a push of this
    run uploads)."""
    import_huggingface_hub()  # a missing package fails at once, before the run is loaded and sampled
    return build_card(card_facts(run_dir, repo_id, info, transformers=transformers, files=files))


# -- the folder that is uploaded -----------------------------------------------------------------------
def check_pushable(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise TinyLMError(f"run directory {run_dir} does not exist")
    missing = [name for name in REQUIRED if not (run_dir / name).is_file()]
    if missing:
        raise TinyLMError(f"{run_dir} is not a trained tinylm run (no {', '.join(missing)})")
    if not is_run(run_dir):
        raise TinyLMError(f"{run_config_file(run_dir)} is not a tinylm run config")
    return json.loads(run_config_file(run_dir).read_text(encoding="utf-8"))


def _write_repo_folder(run_dir: Path, config: dict[str, Any], folder: Path, repo_id: str, info: CardInfo) -> None:
    """Fill the empty (or absent) `folder` with exactly what is uploaded."""
    transformers = _exports_transformers(config)
    files = folder
    if transformers:
        from .export import export_run  # imported here: only GPT runs need it

        export_run(run_dir, folder, format="transformers")
        files = folder / RUN_SUBFOLDER
    files.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        # The weights once: a GPT repo's are GPT-2's at the root, from which tinylm.load rebuilds its own.
        if (run_dir / name).is_file() and not (transformers and name == WEIGHTS):
            shutil.copyfile(run_dir / name, files / name)
    if (run_dir / LOSS_PLOT).is_file():
        shutil.copyfile(run_dir / LOSS_PLOT, folder / LOSS_PLOT)
    if (run_dir / ADAPTER).is_dir():  # a LoRA fine-tune's adapter: PeftModel.from_pretrained(base, repo, subfolder=)
        shutil.copytree(run_dir / ADAPTER, folder / ADAPTER)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    files = ["README.md", *files]  # the card lists exactly what the folder holds
    write_text(folder / "README.md", model_card(run_dir, repo_id, info, transformers=transformers, files=files))


def _write_dry_run(run_dir: Path, config: dict[str, Any], out: Path, repo_id: str, info: CardInfo) -> None:
    """Write the folder into `out`: built beside it, then renamed into place, so `out` is never half-made."""
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise TinyLMError(f"--dry-run {out} is inside the run {run_dir}; choose a folder outside it")
    from ..folders import writing_output

    with writing_output(DRY_RUN_FOLDER, out, overwrite=True, flag="--dry-run") as staging:
        _write_repo_folder(run_dir, config, staging, repo_id, info)


DRY_RUN_FOLDER = OutputKind("an earlier dry run", lambda folder: (folder / "README.md").is_file()
                            and is_run(_run_folder(folder)))
"""A push's --dry-run folder (tinylm.folders): only an earlier dry run's output (a card beside a run) is replaced."""


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of a failed connection: OSError, plus the HTTP client's own (httpx / httpx2 in recent
    huggingface_hub versions do not derive them from OSError)."""
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except ImportError:
            pass
    return tuple(errors)


@contextmanager
def hub_errors(repo_id: str, endpoint: str, action: str, not_found: str) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one-line TinyLMErrors; `not_found` says a missing repo."""
    from huggingface_hub.utils import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except RepositoryNotFoundError:
        raise TinyLMError(f"{not_found} (a private one needs a token: HF_TOKEN or `hf auth login`)") from None
    except RevisionNotFoundError:
        raise TinyLMError(f"{repo_id} on {endpoint} has no such revision") from None
    except OfflineModeIsEnabled:
        raise TinyLMError(f"cannot {action}: HF_HUB_OFFLINE is set; unset it to reach {endpoint}") from None
    except LocalEntryNotFoundError:
        raise TinyLMError(f"cannot {action}: {endpoint} is unreachable (or HF_HUB_OFFLINE is set) and "
                          f"{repo_id} is not in the Hugging Face cache") from None
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        if status in (401, 403):
            raise TinyLMError(f"cannot {action}: {endpoint} refused the token (HTTP {status}); check --token "
                              f"or HF_TOKEN, and its access to {repo_id}") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TinyLMError(f"cannot {action}: {endpoint} answered HTTP {status}: {first}") from None
    except _network_errors() as e:
        raise TinyLMError(f"cannot {action}: {endpoint} is unreachable ({type(e).__name__}: {e})") from None


def push(run_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
         dry_run: str | Path | None = None, license: str = "mit",
         language: str | list[str] | None = None, datasets: list[str] | None = None,
         description: str | None = None, tags: list[str] | None = None) -> str:
    """Publish the run in `run_dir` as the model repo `repo_id` (USER/NAME) and return the repo's URL; with
    `dry_run`, write the exact folder that would be uploaded there instead (no network) and return its path.
    `language` and `datasets` (Hub dataset ids) fill the card's metadata (the built-in corpora have their own);
    `description` opens the card, `tags` are added to its tags (the course asks for both).

    The token is `token`, else HF_TOKEN, else the one saved by `hf auth login`. The run directory is only
    read: the upload is built in a temporary folder."""
    run_dir = as_path(run_dir, "run_dir")
    if not isinstance(repo_id, str) or not is_hub_name(repo_id):
        raise TinyLMError(f"--repo {repo_id!r} is not a Hub repo id; use USER/NAME (letters, digits, - _ .)")
    info = CardInfo(license, language, datasets, description, tags)
    config = check_pushable(run_dir)
    hub = import_huggingface_hub()
    if dry_run is not None:
        _write_dry_run(run_dir, config, as_path(dry_run, "dry_run"), repo_id, info)
        return str(dry_run)
    token = token or hub.get_token()
    if not token:
        raise TinyLMError("no Hugging Face token: pass --token, set HF_TOKEN, or log in with `hf auth login`")
    endpoint = hub_endpoint()
    api = hub.HfApi(endpoint=endpoint, token=token)
    action, not_found = f"push to {repo_id}", f"cannot push: no model repo {repo_id} on {endpoint}"
    with hub_errors(repo_id, endpoint, action, not_found):
        # First, so a bad token or an unreachable Hub fails at once, before the card's samples are generated.
        url = api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tinylm-push-") as tmp:
        folder = Path(tmp) / "repo"
        _write_repo_folder(run_dir, config, folder, repo_id, info)
        with hub_errors(repo_id, endpoint, action, not_found):
            api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                              commit_message=f"Upload tinylm run {run_dir.resolve().name}")
    return str(url)


def read_card(repo_id: str):
    """The model card (a huggingface_hub.ModelCard) of the Hub repo `repo_id`, downloaded (or from the cache)."""
    hub = import_huggingface_hub()
    endpoint = hub_endpoint()
    action, not_found = f"read the model card of {repo_id}", f"no model repo {repo_id} (or no README.md) on {endpoint}"
    with hub_errors(repo_id, endpoint, action, not_found):
        return hub.ModelCard.load(hub.hf_hub_download(repo_id, "README.md", endpoint=endpoint))


# -- loading from the Hub ------------------------------------------------------------------------------
def download_run(repo_id: str, revision: str | None = None) -> Path:
    """Download the tinylm run of the Hub repo `repo_id` (or find it in the Hugging Face cache) and return
    the local folder holding it, ready for `tinylm.load`. Only the run's files are fetched. A GPT repo's
    tinylm/ holds no weights: they are rebuilt from the root's GPT-2 weights, once per repo and commit, in
    tinylm's cache."""
    hub = import_huggingface_hub()
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    endpoint = hub_endpoint()

    def fetch(name: str, subfolder: str | None, revision: str | None, required: bool) -> Path | None:
        """The cached file, or None when the repo has no such file and it is not `required`."""
        try:
            return Path(hub.hf_hub_download(repo_id, name, subfolder=subfolder, revision=revision,
                                            endpoint=endpoint))
        # Offline and not cached is not the same as absent (the subclass is caught first).
        except LocalEntryNotFoundError:
            if required:
                raise
            return None
        except EntryNotFoundError:
            if required:
                where = f"{subfolder}/{name}" if subfolder else name
                raise TinyLMError(f"{repo_id} is not a tinylm run: it has no {where}") from None
            return None

    not_found = f"{repo_id} is neither a local run directory nor a model repo on {endpoint}"
    with hub_errors(repo_id, endpoint, f"load {repo_id}", not_found):
        root_config = fetch("config.json", None, revision, True)
        snapshot = root_config.parent
        # The cache names snapshot folders by commit: the other files are pinned to that commit, so a push
        # landing between two downloads cannot mix two versions of the run.
        commit = snapshot.name
        # tinylm's config is config.json (most runs), tinylm_config.json (fine-tunes), or in tinylm/ (GPT).
        own_config = None if is_run_config(root_config) else fetch(TINYLM_CONFIG, None, commit, False)
        subfolder = None if is_run_config(root_config) or own_config else RUN_SUBFOLDER
        # A GPT repo's tinylm/ has weights only when pushed before they were kept once, at the root.
        found = {name: fetch(name, subfolder, commit, name in REQUIRED and not (subfolder and name == WEIGHTS))
                 for name in RUN_FILES}
        if not subfolder or found[WEIGHTS]:
            return snapshot / subfolder if subfolder else snapshot
        rebuilt = _rebuilt_runs() / "hub" / repo_id.replace("/", "--") / commit
        gpt2_weights = None if (rebuilt / WEIGHTS).is_file() else fetch(WEIGHTS, None, commit, True)
    return _rebuilt_run(gpt2_weights, snapshot / subfolder, rebuilt)
