"""`tinylm project check`: the final project's requirements, checked on a submission the way a teacher checks it.

PATH is a tinylm run directory, or a student's own submission folder: their code (.py, .ipynb), a weights file
(safetensors), a tokenizer folder, a W&B run folder (wandb/offline-run-* or run-*), a README.md, optionally
history.json (tinylm.course.project.save writes it). Each requirement gets one line, ✓ (holds), ✗ (does not, and
why) or ? (could not be checked, and what would check it); nothing raises on a bad or partial folder.

    decoder-only and causal    a forward pass: changing later tokens leaves earlier positions' logits unchanged
                               (a tinylm run; a student's model only with --model-class module:Class, which
                               imports the student's code: the one requirement that runs it)
    fewer than 1M parameters   counted in the weights file's header (safetensors: no code runs)
    transformers tokenizer     AutoTokenizer.from_pretrained(folder) loads it
    at least 3 epochs, falling the validation loss after every epoch: the W&B run's history, else history.json
                               or the run's metrics.jsonl
    own training loop          no Trainer (transformers, trl, Lightning) imported or called in the code: an AST
                               check (a comment or a string naming Trainer is fine); files named bonus* hold the
                               course's bonus fine-tune and are left out
    W&B train and eval loss    a key with "train" and "loss" and one with "eval" or "val" and "loss" in its history
    Hub repo with a card       README.md of the repo (--hub USER/NAME, or the huggingface.co link in the README)
                               with tags and a description
    code and README            a .py or .ipynb file and README.md (a student's folder)
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import TinyLMError
from ..run.layout import METRICS, WEIGHTS, is_run
from ..run.loggers import wandb_run_folders
from .project import MAX_PARAMETERS, MIN_EPOCHS

OK, FAIL, UNKNOWN = "ok", "fail", "unknown"
MARKS = {OK: "✓", FAIL: "✗", UNKNOWN: "?"}
SKIPPED_FOLDERS = {".git", ".venv", "venv", "__pycache__", "wandb", ".ipynb_checkpoints", "node_modules"}
TRAINER_MODULES = ("transformers", "trl", "lightning", "pytorch_lightning", "accelerate", "keras")
HUB_LINK = re.compile(r"huggingface\.co/(?!datasets/|spaces/)([A-Za-z0-9][\w.-]*/[\w.-]+)")

NAMES = {
    "model": {"en": "decoder-only and causal", "de": "Decoder-only und kausal"},
    "parameters": {"en": "fewer than 1M parameters", "de": "unter 1 Mio. Parameter"},
    "tokenizer": {"en": "tokenizer from transformers", "de": "Tokenizer aus transformers"},
    "epochs": {"en": "3+ epochs, validation loss falling", "de": "≥ 3 Epochen, Validierungs-Loss sinkt"},
    "own_loop": {"en": "own training loop (no Trainer)", "de": "eigener Trainingsloop (kein Trainer)"},
    "wandb": {"en": "W&B with train and eval loss", "de": "W&B mit Trainings- und Eval-Loss"},
    "hub": {"en": "Hub repo with a model card", "de": "Hub-Repo mit Model Card"},
    "files": {"en": "code and README.md", "de": "Code und README.md"},
}


@dataclass
class Requirement:
    id: str
    status: str  # ok, fail or unknown
    message: str  # why, in the report's language

    def line(self, lang: str) -> str:
        return f"{MARKS[self.status]} {NAMES[self.id][lang]}: {self.message}"


@dataclass
class SubmissionReport:
    path: str
    kind: str  # "run" (a tinylm run directory) or "submission" (a student's folder)
    lang: str
    requirements: list[Requirement] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.status == OK for r in self.requirements)

    def text(self) -> str:
        return "\n".join(r.line(self.lang) for r in self.requirements)

    def to_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "lang": self.lang, "passed": self.passed,
                "requirements": [{**asdict(r), "name": NAMES[r.id][self.lang]} for r in self.requirements]}


def _say(lang: str, en: str, de: str) -> str:
    return de if lang == "de" else en


# -- what a folder holds ------------------------------------------------------------------------------------------
@dataclass
class Folder:
    """The pieces of a submission, found without running anything."""

    root: Path
    code: list[Path]
    weights: Path | None
    tokenizer: Path | None
    wandb_runs: list[Path]
    readme: Path | None
    history: Path | None

    @classmethod
    def find(cls, root: Path) -> Folder:
        files = [p for p in _walk(root) if p.is_file()]
        code = sorted(p for p in files if p.suffix in (".py", ".ipynb"))
        weights = [p for p in files if p.suffix == ".safetensors" and "checkpoint" not in p.parts]
        weights.sort(key=lambda p: (p.name != WEIGHTS, len(p.parts)))
        tokenizers = sorted({p.parent for p in files if p.name in ("tokenizer.json", "tokenizer_config.json")},
                            key=lambda p: len(p.parts))
        return cls(root, code, weights[0] if weights else None, tokenizers[0] if tokenizers else None,
                   wandb_run_folders(root), root / "README.md" if (root / "README.md").is_file() else None,
                   root / "history.json" if (root / "history.json").is_file() else None)


def _walk(root: Path) -> Iterator[Path]:
    for path in sorted(root.iterdir()):
        if path.is_dir() and not path.is_symlink():
            if path.name not in SKIPPED_FOLDERS and not path.name.startswith("."):
                yield from _walk(path)
        else:
            yield path


# -- the requirements ---------------------------------------------------------------------------------------------
def check_submission(path: str | Path, *, hub: str | None = None, model_class: str | None = None,
                     lang: str = "en") -> SubmissionReport:
    """Check the final project's requirements on `path` (see the module docstring); never raises for what the
    folder holds (a missing or damaged piece is a ✗ or ? line), only for a path that is not a folder."""
    if lang not in ("en", "de"):
        raise TinyLMError(f"--lang must be en or de, got {lang!r}")
    root = Path(path)
    if not root.is_dir():
        raise TinyLMError(f"{root} is not a folder: give a tinylm run directory or a submission folder")
    folder = Folder.find(root)
    run = is_run(root)
    report = SubmissionReport(str(root), "run" if run else "submission", lang)
    checks = (_run_model, _run_parameters, _tokenizer, _epochs, _run_loop, _wandb, _hub) if run else \
        (_student_model, _student_parameters, _tokenizer, _epochs, _own_loop, _wandb, _hub, _files)
    for check in checks:
        try:
            report.requirements.append(check(folder, lang=lang, hub=hub, model_class=model_class))
        except Exception as e:  # noqa: BLE001 - a damaged piece is what this line reports, never a traceback
            name = check.__name__.lstrip("_").replace("run_", "").replace("student_", "")
            report.requirements.append(Requirement(
                {"loop": "own_loop"}.get(name, name), FAIL,
                _say(lang, f"could not be read ({type(e).__name__}: {_first_line(e)})",
                     f"ließ sich nicht lesen ({type(e).__name__}: {_first_line(e)})")))
    return report


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else ""


def _run_model(folder: Folder, lang: str, **_) -> Requirement:
    from ..publishing.hub import load

    run = load(folder.root)
    family = run.config.model.__class__.__name__
    if family != "GPTConfig":
        return Requirement("model", FAIL, _say(lang, f"a {run.module.describe()}, not a decoder-only Transformer",
                                               f"ein {run.module.describe()}, kein Decoder-only-Transformer"))
    return _causal(_TinylmModel(run.module), run.tokenizer.vocab_size, run.config.data.block_size, lang,
                   run.module.describe())


class _TinylmModel:
    """A tinylm model seen as `logits = model(ids)`."""

    def __init__(self, module):
        self.module = module

    def __call__(self, ids):
        return self.module(ids, None)[0]

    def eval(self):
        self.module.eval()


def _causal(model, vocab_size: int, block_size: int, lang: str, what: str) -> Requirement:
    import torch

    length = max(2, min(block_size, 16))
    ids = torch.randint(0, vocab_size, (2, length), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, length // 2:] = (changed[:, length // 2:] + 1) % vocab_size
    model.eval()
    with torch.no_grad():
        first, second = _logits(model(ids)), _logits(model(changed))
    if first.shape[:2] != (2, length):
        return Requirement("model", FAIL, _say(lang, f"its logits have the shape {tuple(first.shape)}, not "
                                                     f"(batch, length, vocabulary)",
                                               f"die Logits haben die Form {tuple(first.shape)}, nicht "
                                               f"(Batch, Länge, Vokabular)"))
    if not torch.allclose(first[:, :length // 2], second[:, :length // 2], atol=1e-5):
        return Requirement("model", FAIL, _say(lang, "later tokens change earlier positions' logits: no causal "
                                                     "mask", "spätere Tokens ändern die Logits früherer "
                                                             "Positionen: keine kausale Maske"))
    return Requirement("model", OK, _say(lang, f"{what}; later tokens leave earlier logits unchanged",
                                         f"{what}; spätere Tokens lassen frühere Logits unverändert"))


def _logits(out):
    return out[0] if isinstance(out, tuple) else out


def _student_model(folder: Folder, lang: str, model_class: str | None, **_) -> Requirement:
    if not model_class:
        return Requirement("model", UNKNOWN, _say(
            lang, "not run: name the model class to test it, e.g. --model-class model:DecoderOnlyLM",
            "nicht geprüft: nenne die Modellklasse, z. B. --model-class model:DecoderOnlyLM"))
    if folder.weights is None:
        return Requirement("model", FAIL, _say(lang, "no .safetensors weights to load into the class",
                                               "keine .safetensors-Gewichte, die in die Klasse passen"))
    model = _load_student_model(folder, model_class)
    vocab_size = next(m.num_embeddings for m in model.modules() if type(m).__name__ == "Embedding")
    return _causal(model, vocab_size, getattr(model, "block_size", 16), lang, model_class)


def _load_student_model(folder: Folder, model_class: str):
    """The student's class, imported from the folder (the one place this check runs their code), built with
    config.json's arguments and given the weights (strictly)."""
    import inspect

    from safetensors.torch import load_file

    module_name, _, class_name = model_class.partition(":")
    if not module_name or not class_name:
        raise TinyLMError(f"--model-class must be module:Class, got {model_class!r}")
    sys.path.insert(0, str(folder.root))
    try:
        klass = getattr(importlib.import_module(module_name), class_name)
    finally:
        sys.path.remove(str(folder.root))
    config = folder.root / "config.json"
    values = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    values = values.get("model", values) if isinstance(values, dict) else {}
    accepted = inspect.signature(klass).parameters
    model = klass(**{k: v for k, v in values.items() if k in accepted})
    model.load_state_dict(load_file(str(folder.weights)), strict=True)
    return model


def count_parameters(weights: Path) -> int:
    """Weights in a safetensors file, read from its header (no tensor is loaded, no code runs)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(weights), framework="pt") as f:
        for key in f.keys():
            count = 1
            for size in f.get_slice(key).get_shape():
                count *= size
            total += count
    return total


def _parameters(weights: Path | None, lang: str) -> Requirement:
    if weights is None:
        return Requirement("parameters", FAIL, _say(lang, "no .safetensors weights file",
                                                    "keine .safetensors-Gewichtsdatei"))
    count = count_parameters(weights)
    status = OK if count < MAX_PARAMETERS else FAIL
    return Requirement("parameters", status, _say(lang, f"{count:,} in {weights.name}", f"{count:,} in "
                                                                                      f"{weights.name}"))


def _run_parameters(folder: Folder, lang: str, **_) -> Requirement:
    return _parameters(folder.root / WEIGHTS if (folder.root / WEIGHTS).is_file() else None, lang)


def _student_parameters(folder: Folder, lang: str, **_) -> Requirement:
    return _parameters(folder.weights, lang)


def _tokenizer(folder: Folder, lang: str, **_) -> Requirement:
    if folder.tokenizer is None:
        return Requirement("tokenizer", FAIL, _say(lang, "no tokenizer folder (tokenizer.json)",
                                                   "kein Tokenizer-Ordner (tokenizer.json)"))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder.tokenizer), local_files_only=True)
    where = folder.tokenizer.relative_to(folder.root).as_posix() if folder.tokenizer != folder.root else "."
    return Requirement("tokenizer", OK, _say(lang, f"AutoTokenizer loads {where}: {type(tokenizer).__name__}, "
                                                   f"{len(tokenizer):,} tokens",
                                             f"AutoTokenizer lädt {where}: {type(tokenizer).__name__}, "
                                             f"{len(tokenizer):,} Tokens"))


def validation_losses(folder: Folder) -> tuple[list[float], str]:
    """The validation loss after each epoch and where it was read: the W&B run's history, else history.json,
    else the run's metrics.jsonl."""
    from ..io import read_jsonl
    from ..run.loggers import loss_keys, read_wandb_run

    for run_folder in folder.wandb_runs:
        history = read_wandb_run(run_folder).history
        _, eval_key = loss_keys(history)
        if eval_key:
            return [row[eval_key] for row in history if isinstance(row.get(eval_key), (int, float))], "W&B"
    if folder.history is not None:
        records = json.loads(folder.history.read_text(encoding="utf-8"))
        return [r["val_loss"] for r in records], "history.json"
    if (folder.root / METRICS).is_file():
        return [r["val_loss"] for r in read_jsonl(folder.root / METRICS) if not r.get("partial")], METRICS
    return [], ""


def _epochs(folder: Folder, lang: str, **_) -> Requirement:
    losses, source = validation_losses(folder)
    if not losses:
        return Requirement("epochs", FAIL, _say(lang, "no validation loss found (W&B, history.json, metrics)",
                                                "kein Validierungs-Loss gefunden (W&B, history.json, Metriken)"))
    shown = " → ".join(f"{v:.3f}" for v in losses)
    if len(losses) < MIN_EPOCHS:
        return Requirement("epochs", FAIL, _say(lang, f"{len(losses)} epochs ({shown}, {source}); at least "
                                                      f"{MIN_EPOCHS}", f"{len(losses)} Epochen ({shown}, {source}); "
                                                                       f"mindestens {MIN_EPOCHS}"))
    if not losses[-1] < losses[0]:
        return Requirement("epochs", FAIL, _say(lang, f"the validation loss does not fall: {shown} ({source})",
                                                f"der Validierungs-Loss sinkt nicht: {shown} ({source})"))
    return Requirement("epochs", OK, _say(lang, f"{len(losses)} epochs: {shown} ({source})",
                                          f"{len(losses)} Epochen: {shown} ({source})"))


def trainer_uses(source: str) -> list[tuple[int, str]]:
    """(line, what) for each import or call of a Trainer class (transformers, trl, Lightning, accelerate) in
    Python `source`: found in its syntax tree, so a comment or a string that names Trainer does not count."""
    tree = ast.parse(source)
    modules: dict[str, str] = {}  # local alias -> the framework it names
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in TRAINER_MODULES:
                    modules[(alias.asname or alias.name).split(".")[0] if not alias.asname else alias.asname] = \
                        alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in TRAINER_MODULES:
            for alias in node.names:
                if alias.name.endswith("Trainer"):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
                elif alias.name in ("pytorch",):  # from lightning import pytorch as pl
                    modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.endswith("Trainer"):
            base = node.value
            while isinstance(base, ast.Attribute):
                base = base.value
            if isinstance(base, ast.Name) and base.id in modules:
                found.append((node.lineno, f"{ast.unparse(node)}"))
    return sorted(set(found))


def notebook_code(path: Path) -> str:
    """The code cells of a notebook as one Python source (IPython magics and shell lines left out)."""
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    lines = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        lines.extend(line if not line.lstrip().startswith(("%", "!")) else "" for line in source.splitlines())
    return "\n".join(lines)


def _own_loop(folder: Folder, lang: str, **_) -> Requirement:
    code = [p for p in folder.code if not p.name.lower().startswith("bonus")]
    if not code:
        return Requirement("own_loop", FAIL, _say(lang, "no .py or .ipynb file with the training loop",
                                                  "keine .py- oder .ipynb-Datei mit dem Trainingsloop"))
    uses = []
    for path in code:
        source = notebook_code(path) if path.suffix == ".ipynb" else path.read_text(encoding="utf-8")
        try:
            uses += [f"{path.relative_to(folder.root).as_posix()}:{line} {what}" for line, what in trainer_uses(source)]
        except SyntaxError as e:
            return Requirement("own_loop", UNKNOWN, _say(lang, f"{path.name} is not valid Python (line {e.lineno})",
                                                         f"{path.name} ist kein gültiges Python (Zeile {e.lineno})"))
    if uses:
        return Requirement("own_loop", FAIL, _say(lang, f"a Trainer: {'; '.join(uses[:3])} (the bonus fine-tune "
                                                        f"belongs in a file named bonus*)",
                                                  f"ein Trainer: {'; '.join(uses[:3])} (das Bonus-Finetuning "
                                                  f"gehört in eine Datei bonus*)"))
    return Requirement("own_loop", OK, _say(lang, f"no Trainer imported or called in {len(code)} file(s)",
                                            f"kein Trainer importiert oder aufgerufen in {len(code)} Datei(en)"))


def _run_loop(folder: Folder, lang: str, **_) -> Requirement:
    from ..config import RunConfig

    config = RunConfig.load(folder.root / "config.json")
    if config.model.__class__.__name__ == "HFCausalLMConfig":
        return Requirement("own_loop", FAIL, _say(lang, "a fine-tune, trained by the transformers Trainer",
                                                  "ein Finetuning, trainiert vom Trainer von transformers"))
    return Requirement("own_loop", OK, _say(lang, "trained by tinylm's own loop (no Trainer)",
                                            "trainiert von tinylms eigenem Loop (kein Trainer)"))


def _wandb(folder: Folder, lang: str, **_) -> Requirement:
    from ..run.loggers import loss_keys, read_wandb_run

    if not folder.wandb_runs:
        return Requirement("wandb", FAIL, _say(lang, "no W&B run folder (wandb/offline-run-* or run-*)",
                                               "kein W&B-Lauf (wandb/offline-run-* oder run-*)"))
    for run_folder in folder.wandb_runs:
        run = read_wandb_run(run_folder)
        train_key, eval_key = loss_keys(run.history)
        if train_key and eval_key:
            where = run.url or _say(lang, "offline (not synced)", "offline (nicht hochgeladen)")
            return Requirement("wandb", OK, f"{train_key}, {eval_key} ({len(run.history)} rows; {where})")
    return Requirement("wandb", FAIL, _say(lang, "the W&B runs log no train and eval loss",
                                           "die W&B-Läufe loggen keinen Trainings- und Eval-Loss"))


def _hub(folder: Folder, lang: str, hub: str | None, **_) -> Requirement:
    repo = hub or _hub_link(folder.readme)
    if not repo:
        return Requirement("hub", UNKNOWN, _say(lang, "not checked: give --hub USER/NAME (or link the repo in "
                                                      "README.md)", "nicht geprüft: gib --hub NAME/REPO an (oder "
                                                                    "verlinke das Repo in der README.md)"))
    from ..publishing.hub import read_card

    card = read_card(repo)
    tags = list(card.data.tags or [])
    description = [line for line in card.text.splitlines() if len(line.strip()) >= 20
                   and not line.lstrip().startswith(("#", "|", "!", "```", "-", "*"))]
    if not tags or not description:
        missing = [w for w, ok in ((_say(lang, "tags", "Tags"), tags),
                                   (_say(lang, "a description", "eine Beschreibung"), description)) if not ok]
        return Requirement("hub", FAIL, _say(lang, f"{repo}: the card has no {' and '.join(missing)}",
                                             f"{repo}: der Model Card fehlen {' und '.join(missing)}"))
    return Requirement("hub", OK, _say(lang, f"{repo}: card with tags {', '.join(tags[:6])} and a description",
                                       f"{repo}: Model Card mit Tags {', '.join(tags[:6])} und Beschreibung"))


def _hub_link(readme: Path | None) -> str | None:
    if readme is None:
        return None
    match = HUB_LINK.search(readme.read_text(encoding="utf-8", errors="replace"))
    return match.group(1).rstrip(".") if match else None


def _files(folder: Folder, lang: str, **_) -> Requirement:
    missing = [name for name, present in (("README.md", folder.readme), (".py/.ipynb", folder.code)) if not present]
    if missing:
        return Requirement("files", FAIL, _say(lang, f"missing: {', '.join(missing)}", f"fehlt: {', '.join(missing)}"))
    return Requirement("files", OK, f"README.md, {', '.join(p.name for p in folder.code[:4])}")
