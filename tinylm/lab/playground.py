"""The web playground: a local Gradio page to try one or more runs side by side.

    demo = tinylm.lab.playground.build_app(["runs/lstm", "runs/gru"])     # a gr.Blocks, queue configured
    tinylm.serve(["runs/lstm", "runs/gru"], port=7860)         # what `tinylm serve` runs

One shared prompt and set of sampling controls; one column per run with its name, description and parameter
count, the text it generates (streamed, all columns in turn) and a bar chart of its next-token distribution
after the prompt at the chosen temperature. Requests are bounded (`Limits`): prompt length, new tokens, time,
how many generate at once and how many may wait. Gradio is imported here only, so `import tinylm` stays light.
"""

from __future__ import annotations

import html
import os
import sys
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from ..config import MAX_SEED
from ..errors import TinyLMError
from ..generation.sampling import SamplingConfig
from ..loading import LoadedModel
from ..publishing.hub import load

# Gradio reads this when it is imported and otherwise contacts its telemetry and version-check hosts.
# The playground is a local tool: forced off, not just defaulted, whatever the environment says.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
try:
    import gradio as gr
except ImportError:
    raise TinyLMError("the web playground needs gradio: pip install 'tinylm[app]'") from None

TOP_TOKENS = 20
"""Bars in the next-token chart."""
STREAM_EVERY_S = 0.05
"""Seconds between streamed page updates: per-token updates would flood the queue with tiny messages."""
VISIBLE_WHITESPACE = {" ": "␣", "\n": "⏎", "\t": "⇥", "\r": "␍"}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many are served at once."""

    max_prompt_chars: int = 2_000
    max_new_tokens: int = 1_000
    """The top of the length slider; Gradio refuses larger values."""
    max_seconds: float = 120.0
    """A generation still running after this long stops where it is, so a slow model cannot hold a worker."""
    concurrency: int = 2
    """Requests generating at the same time; the others wait in the Gradio queue."""
    max_queue: int = 64
    """Requests allowed to wait; beyond that Gradio answers that the queue is full."""

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise TinyLMError(f"playground limit {f.name} must be a number > 0, got {value!r}")


def visible_token(text: str) -> str:
    """A token as a chart label: whitespace shown as symbols, other control characters escaped."""
    if not text:
        return "∅"
    return "".join(VISIBLE_WHITESPACE.get(c) or (c if c.isprintable() else repr(c)[1:-1]) for c in text)


def distribution_table(run: LoadedModel, prompt: str, temperature: float):
    """The TOP_TOKENS most likely next tokens as a (token, probability) DataFrame for gr.BarPlot."""
    import pandas as pd  # a dependency of gradio

    labels, probs = [], []
    for text, p in run.next_token_distribution(prompt, temperature=temperature, top=TOP_TOKENS):
        label = visible_token(text)
        # The chart groups bars by label: distinct tokens that read alike (e.g. partial UTF-8 bytes, shown
        # as U+FFFD) would merge into one bar, so repeats get primes.
        while label in labels:
            label += "′"
        labels.append(label)
        probs.append(p)
    return pd.DataFrame({"token": labels, "probability": probs})


def run_labels(runs: Sequence[LoadedModel]) -> list[str]:
    """Column headings: the run directory's name, numbered when two runs share a name."""
    names = [run.run_dir.name if run.run_dir else f"run {i + 1}" for i, run in enumerate(runs)]
    return [f"{name} ({i + 1})" if names.count(name) > 1 else name for i, name in enumerate(names)]


def _error(message: str) -> str:
    # Messages name tokens like <eos>: escaped, or the Markdown renderer drops them as HTML tags.
    return f"**Error:** {html.escape(message, quote=False)}"


def _number(value, label: str, whole: bool = False) -> float:
    """A control's value as a number; a missing, non-numeric or fractional (`whole`) value is a TinyLMError
    worded for the page (the API takes any JSON value, not only what the sliders send)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise TinyLMError(f"{label} must be a number, got {value!r}")
    if whole and value != int(value):
        raise TinyLMError(f"{label} must be a whole number, got {value!r}")
    return value


def page_settings(temperature: float, top_k: float | None, top_p: float, max_new_tokens: float, seed: str,
                  greedy: bool, vocab_sizes: Sequence[int]) -> SamplingConfig:
    """The page's controls as a SamplingConfig; a bad value is a TinyLMError worded for the page (the names
    of its controls, not the CLI's flags). An empty seed means a new random text each time."""
    temperature = 1.0 if greedy and temperature is None else _number(temperature, "Temperature")
    if not greedy and not 0 < temperature < float("inf"):
        raise TinyLMError("Temperature must be above 0 (or tick Greedy for the most likely token each time)")
    top_k = int(_number(top_k or 0, "Top-k", whole=True))
    if not 0 <= top_k <= min(vocab_sizes):
        raise TinyLMError(f"Top-k must be between 1 and {min(vocab_sizes)} (the smallest vocabulary here), "
                          "or 0 for off")
    top_p = _number(top_p, "Top-p")
    if not 0 < top_p <= 1:
        raise TinyLMError("Top-p must be above 0 and at most 1 (1 is off)")
    max_new_tokens = int(_number(max_new_tokens, "Max new tokens", whole=True))
    seed = seed.strip() if isinstance(seed, str) else ""
    if seed and not (seed.isascii() and seed.isdigit() and int(seed) <= MAX_SEED):
        raise TinyLMError(f"Seed must be a whole number from 0 to {MAX_SEED}, or empty for a random text")
    config = SamplingConfig(max_new_tokens=max_new_tokens, temperature=float(temperature or 1.0), top_k=top_k or None,
                            top_p=float(top_p), greedy=bool(greedy), seed=int(seed) if seed else None)
    for vocab_size in vocab_sizes:  # what tinylm itself checks, in case a check above missed one
        config.validate(vocab_size)
    return config


@dataclass(frozen=True)
class GenerateHandler:
    """The Generate button's handler for `runs`: checks the page's values, charts each run's next-token
    distribution, then streams every run's text until done or `limits.max_seconds`. Requests share one handler
    across threads, so it holds settings only; each request's state stays in its own call."""

    runs: Sequence[LoadedModel]
    labels: Sequence[str]
    """Column headings (run_labels), which the status line's notes name."""
    limits: Limits

    def generate(self, prompt: str, temperature: float, top_k: int | None, top_p: float, max_new_tokens: int,
                 seed: str | None, greedy: bool = False) -> Iterator[tuple]:
        """Yields (status, text per run..., chart per run...): charts first, then the texts as they grow."""
        started = time.monotonic()
        try:
            prompt, config = self._request(prompt, temperature, top_k, top_p, max_new_tokens, seed, greedy)
            charts = [distribution_table(run, prompt, config.temperature) for run in self.runs]
        except TinyLMError as e:
            yield (_error(str(e)), *[""] * len(self.runs), *[None] * len(self.runs))
            return

        note = self._unknown_symbols_note(prompt)
        texts = [prompt] * len(self.runs)
        yield ("Generating…" + note, *texts, *charts)
        timed_out = yield from self._stream(prompt, config, texts, started, "Generating…" + note)
        elapsed = time.monotonic() - started
        status = (f"Stopped at the time limit of {self.limits.max_seconds:g} s." if timed_out
                  else f"Done in {elapsed:.2f} s.")
        # The charts again: an API client keeps only the last message, and it should hold everything.
        yield (status + note, *texts, *charts)

    def _request(self, prompt, temperature, top_k, top_p, max_new_tokens, seed,
                 greedy) -> tuple[str, SamplingConfig]:
        """The prompt and sampling settings a request asks for; a bad value is a TinyLMError worded for the page."""
        prompt = "" if prompt is None else prompt  # no prompt: a new text, as from an empty box
        if not isinstance(prompt, str):
            raise TinyLMError(f"The Prompt must be text, got {type(prompt).__name__}")
        if len(prompt) > self.limits.max_prompt_chars:
            raise TinyLMError(f"The prompt has {len(prompt):,} characters; the limit is "
                              f"{self.limits.max_prompt_chars:,}")
        # Each run has its own vocabulary size, which bounds top-k.
        config = page_settings(temperature, top_k, top_p, max_new_tokens, "" if seed is None else str(seed),
                               greedy, [run.tokenizer.vocab_size for run in self.runs])
        return prompt, config

    def _unknown_symbols_note(self, prompt: str) -> str:
        """' (note: …)' naming the prompt's symbols that a run reads as its unknown token; empty if there are none."""
        notes = [f"{label} reads {', '.join(map(repr, unknown[:10]))} as {run.tokenizer.unk_token}"
                 for label, run in zip(self.labels, self.runs) if (unknown := run.tokenizer.unknown_symbols(prompt))]
        # Escaped, as in _error: Markdown would drop "<unk>".
        return html.escape(f" (note: {'; '.join(notes)})", quote=False) if notes else ""

    def _stream(self, prompt: str, config: SamplingConfig, texts: list[str], started: float,
                status: str) -> Generator[tuple, None, bool]:
        """Grows `texts` (one per run) piece by piece, yielding (status, texts..., unchanged charts...) at most
        every STREAM_EVERY_S; returns whether the time limit stopped a run that had more to write."""
        # All runs advance one piece in turn, so the columns grow together however many there are.
        streams = {i: run.stream(prompt, config=config) for i, run in enumerate(self.runs)}
        last_update = time.monotonic()
        while streams:
            for i, stream in list(streams.items()):
                piece = next(stream, None)
                if piece is None:
                    del streams[i]
                else:
                    texts[i] += piece
            if time.monotonic() - started > self.limits.max_seconds:
                return bool(streams)
            if time.monotonic() - last_update >= STREAM_EVERY_S:
                last_update = time.monotonic()
                yield (status, *texts, *[gr.skip()] * len(self.runs))
        return False


@dataclass(frozen=True)
class Page:
    """The page's components that its event reads and writes (headings and run descriptions never change)."""

    prompt: gr.Textbox
    temperature: gr.Slider
    top_k: gr.Number
    top_p: gr.Slider
    max_new_tokens: gr.Slider
    seed: gr.Textbox
    greedy: gr.Checkbox
    button: gr.Button
    status: gr.Markdown
    texts: list[gr.Textbox]
    """One per run, in the runs' order; so are the charts."""
    charts: list[gr.BarPlot]

    @property
    def settings(self) -> list:
        """The controls in the order GenerateHandler.generate takes them, which is the API's parameter order."""
        return [self.prompt, self.temperature, self.top_k, self.top_p, self.max_new_tokens, self.seed, self.greedy]


def _build_page(runs: Sequence[LoadedModel], labels: Sequence[str], limits: Limits) -> Page:
    """Lays out the page inside the open gr.Blocks, top to bottom: the prompt with the Generate button and
    status line, the sampling controls, then one column per run."""
    gr.Markdown("## tinylm playground")
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", lines=3, max_length=limits.max_prompt_chars, elem_id="prompt",
                            placeholder="Text to continue (empty: start a new text)", scale=4)
        with gr.Column(scale=1, min_width=160):
            button = gr.Button("Generate", variant="primary", elem_id="generate")
            status = gr.Markdown("Type a prompt and press Generate.", elem_id="status")
    with gr.Row():
        # Ranges include 0 so that an invalid value reaches tinylm's own validation and its message.
        temperature = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="Temperature",
                                elem_id="temperature", info="lower: safer, higher: more surprising")
        top_k = gr.Number(0, precision=0, minimum=0, label="Top-k", elem_id="top-k", info="0: off")
        top_p = gr.Slider(0.0, 1.0, value=1.0, step=0.01, label="Top-p", elem_id="top-p", info="1: off")
        max_new_tokens = gr.Slider(1, limits.max_new_tokens, value=min(200, limits.max_new_tokens),
                                   step=1, label="Max new tokens", elem_id="max-new-tokens")
        with gr.Column(min_width=160):
            # A text box, not gr.Number: a number box shows and sends 0 when empty, and every fresh page
            # would then write the same text.
            seed = gr.Textbox("", label="Seed", elem_id="seed", placeholder="random", max_lines=1,
                              info="empty: a new text each time")
            greedy = gr.Checkbox(False, label="Greedy", elem_id="greedy",
                                 info="always the most likely token (ignores temperature)")
    texts, charts = _run_columns(runs, labels)
    return Page(prompt, temperature, top_k, top_p, max_new_tokens, seed, greedy, button, status, texts, charts)


def _run_columns(runs: Sequence[LoadedModel], labels: Sequence[str]) -> tuple[list[gr.Textbox], list[gr.BarPlot]]:
    """One column per run, side by side: its name, description and parameter count, then its text box and
    next-token chart (returned, one of each per run)."""
    texts, charts = [], []
    with gr.Row(equal_height=False):
        for i, (label, run) in enumerate(zip(labels, runs)):
            with gr.Column(min_width=280):
                quality = f" · {best}" if (best := run.best_validation()) else ""
                gr.Markdown(f"### {html.escape(label)}\n{html.escape(run.module.describe())} · "
                            f"{run.num_parameters():,} parameters{quality}", elem_id=f"run-{i}-info")
                texts.append(gr.Textbox(label="Text", lines=10, max_lines=20, interactive=False,
                                        elem_id=f"output-{i}"))
                # y from 0: bars must compare as lengths (the default axis starts near the smallest bar).
                charts.append(gr.BarPlot(x="token", y="probability", sort="-y", y_lim=[0, None],
                                         height=260, elem_id=f"dist-{i}",
                                         label=f"Next token after the prompt (top {TOP_TOKENS})"))
    return texts, charts


def _wire_events(page: Page, handler: GenerateHandler) -> None:
    """The page's one event, inside the open gr.Blocks: Generate (also the API's /generate) streams `handler`'s
    messages into the status line, texts and charts."""
    # No submit-on-Enter: newlines are part of prompts (a play's "ROMEO:\n").
    page.button.click(handler.generate, page.settings, [page.status, *page.texts, *page.charts],
                      api_name="generate")


def build_app(runs: Sequence[LoadedModel | str | Path], limits: Limits | None = None,
              device: str = "cpu") -> gr.Blocks:
    """The playground page for `runs` (loaded models or run directories), its queue set up from `limits`."""
    limits = limits or Limits()
    if not runs:
        raise TinyLMError("give at least one run to serve")
    runs = [run if isinstance(run, LoadedModel) else load(run, device=device) for run in runs]
    for run in runs:
        # Requests share each module across threads; generation restores the module's train/eval mode when
        # it ends, so a module left in training mode would flip under concurrent requests (and use dropout).
        run.module.eval()
    labels = run_labels(runs)
    with gr.Blocks(title="tinylm playground", analytics_enabled=False) as demo:
        page = _build_page(runs, labels, limits)
        _wire_events(page, GenerateHandler(runs, labels, limits))
    return demo.queue(max_size=limits.max_queue, default_concurrency_limit=limits.concurrency)


def serve(runs: Sequence[LoadedModel | str | Path], host: str = "127.0.0.1", port: int | None = None,
          limits: Limits | None = None, device: str = "cpu", block: bool = True) -> gr.Blocks:
    """Build the playground and serve it on http://host:port until Ctrl-C (or, with block=False, in the
    background: call `.close()` on the returned Blocks). Never makes a share link."""
    demo = build_app(runs, limits, device)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}: anyone who can reach this machine can use the playground "
              "(there is no login)", file=sys.stderr)
    try:
        # quiet: Gradio's banner suggests share=True, which this tool never uses; the URL is printed below.
        # run_history off: its history page offers to sync requests to a Hugging Face bucket.
        demo.launch(server_name=host, server_port=port, share=False, inbrowser=False,
                    prevent_thread_lock=True, quiet=True, show_error=True, ssr_mode=False, mcp_server=False,
                    pwa=False, run_history=False)
    except OSError as e:
        raise TinyLMError(f"cannot serve on {host}:{port or 'default port'} ({e})") from None
    print(f"tinylm playground: {demo.local_url}", flush=True)
    if block:
        demo.block_thread()  # returns on Ctrl-C, after closing the server
    return demo
