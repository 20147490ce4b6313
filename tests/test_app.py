"""The web playground (`tinylm serve`): served on 127.0.0.1 and driven as users drive it, through the Gradio
API (gradio_client) and in headless Chromium (Playwright with the Debian browser, no downloaded browser)."""

from __future__ import annotations

import dataclasses
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import tinylm
from tinylm.models import build_model, model_config

pytest.importorskip("gradio", reason="the playground needs gradio (pip install -e '.[app]')")
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

from tinylm.cli import main
from tinylm.lab.playground import Limits, build_app, distribution_table, serve, visible_token

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and none of Chromium's own calls to Google's services (refused on a closed network, slowly).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LIMITS = Limits(max_prompt_chars=100, max_new_tokens=120, concurrency=2, max_queue=64)


@pytest.fixture(scope="module", autouse=True)
def outside_connections():
    """Records every connection this process tries beyond the loopback: the playground must make none
    (no analytics, version checks, share links, fonts or Hub calls)."""
    attempts = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise ConnectionRefusedError(f"test blocked a connection to {address}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", lambda s, a: (check(s, a), real_connect(s, a))[1])
        mp.setattr(socket.socket, "connect_ex", lambda s, a: (check(s, a), real_connect_ex(s, a))[1])
        yield attempts
    assert attempts == [], f"the playground tried to reach {attempts}"


@pytest.fixture(scope="module")
def runs(trained_run, tmp_path_factory):
    """Two columns: the tiny trained LSTM, and an untrained GRU on the same tokenizer (a second model
    without a second training run). Its folder only names the column."""
    config = dataclasses.replace(trained_run.config, model=model_config(
        "gru", embed=16, hidden=32, layers=1, dropout=0.0, vocab_size=trained_run.tokenizer.vocab_size))
    folder = tmp_path_factory.mktemp("second") / "untrained-gru"
    folder.mkdir()
    torch.manual_seed(0)
    untrained = tinylm.LoadedModel(build_model(config.model), trained_run.tokenizer, config, folder)
    return [trained_run, untrained]


@pytest.fixture(scope="module")
def server(runs):
    demo = serve(runs, limits=LIMITS, block=False)
    assert demo.server_name == "127.0.0.1" and demo.local_url.startswith("http://127.0.0.1:")  # the default
    yield demo.local_url
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False, analytics_enabled=False, download_files=False)


def ask(client, prompt="ROMEO:", temperature=0.8, top_k=0, top_p=1.0, max_new_tokens=40, seed="1", greedy=False):
    return client.predict(prompt, temperature, top_k, top_p, max_new_tokens, str(seed), greedy,
                          api_name="/generate")


def test_import_tinylm_leaves_gradio_alone_and_its_absence_is_a_clear_error():
    code = ("import sys, tinylm\n"
            "assert 'gradio' not in sys.modules, 'import tinylm imported gradio'\n"
            "sys.modules['gradio'] = None  # what Python does for a package that is not installed\n"
            "try:\n    tinylm.serve\nexcept tinylm.TinyLMError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "the web playground needs gradio: pip install 'tinylm[app]'"
    assert tinylm.serve is serve


def test_each_column_names_its_best_validation_loss_with_the_seed_it_was_trained_with(runs):
    info = {block.elem_id: block.value for block in build_app(runs, limits=LIMITS).blocks.values()
            if getattr(block, "elem_id", None)}
    trained, untrained = runs
    best = min(r["val_loss"] for r in trained.metrics)
    assert trained.best_validation().startswith(f"val loss {best:.4f} (epoch ")
    assert f"val loss {best:.4f}" in info["run-0-info"]
    assert f"seed {trained.config.train.seed})" in info["run-0-info"]
    assert untrained.best_validation() is None and "val loss" not in info["run-1-info"]  # never evaluated


def test_tokens_are_labelled_visibly_and_never_merge():
    assert [visible_token(t) for t in [" ", "\n", "\t", "a b\n", "<eos>", "\x00", ""]] == \
        ["␣", "⏎", "⇥", "a␣b⏎", "<eos>", "\\x00", "∅"]

    class Run:  # two tokens that read alike (byte pieces of one character decode to U+FFFD)
        def next_token_distribution(self, prompt, temperature, top):
            return [("\ufffd", 0.5), ("\ufffd", 0.3), (" ", 0.2)]

    table = distribution_table(Run(), "x", 1.0)
    assert table["token"].nunique() == 3 and table["probability"].tolist() == [0.5, 0.3, 0.2]


def test_mistakes_are_tinylm_errors(tmp_path, runs, capsys):
    with pytest.raises(tinylm.TinyLMError, match="concurrency must be a number > 0"):
        Limits(concurrency=0)
    with pytest.raises(tinylm.TinyLMError, match="at least one run"):
        build_app([])
    with pytest.raises(tinylm.TinyLMError, match="does not exist"):
        build_app([tmp_path / "missing"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(tinylm.TinyLMError, match="cannot serve on 127.0.0.1:"):
            serve(runs[:1], port=busy.getsockname()[1], block=False)
    assert main(["serve", str(tmp_path / "missing")]) == 2  # the CLI: one line, exit code 2
    assert capsys.readouterr().err == f"error: run directory {tmp_path / 'missing'} does not exist\n"


def test_generate_streams_every_run_and_charts_the_distribution(client, runs):
    status, *rest = ask(client, seed=7)
    texts, charts = rest[:2], rest[2:]
    assert status.startswith("Done")
    for run, text in zip(runs, texts):
        assert text.startswith("ROMEO:") and 1 <= len(run.tokenizer.encode(text[len("ROMEO:"):])) <= 40
    assert texts[0] != texts[1]
    assert list(ask(client, seed=7)[1:3]) == texts  # one seed, the same texts

    for run, chart in zip(runs, charts):  # what each column charts is that run's distribution at T=0.8
        expected = run.next_token_distribution("ROMEO:", temperature=0.8, top=20)
        assert [row[0] for row in chart["data"]] == [visible_token(t) for t, _ in expected]
        assert [row[1] for row in chart["data"]] == pytest.approx([p for _, p in expected], abs=1e-6)
    hotter = ask(client, temperature=2.0, max_new_tokens=1)[3]
    assert hotter["data"][0][1] < charts[0]["data"][0][1]  # a higher temperature flattens the distribution
    status = ask(client, prompt="ROMEO ¤", max_new_tokens=1)[0]  # a symbol neither vocabulary has
    assert status.endswith(" (note: run reads '¤' as &lt;unk&gt;; untrained-gru reads '¤' as &lt;unk&gt;)")


def test_invalid_settings_show_an_error_and_the_worker_keeps_serving(client, runs):
    vocab = runs[0].tokenizer.vocab_size
    for settings, message in [
        ({"temperature": 0.0}, "Temperature must be above 0 (or tick Greedy"),
        ({"top_p": 0.0}, "Top-p must be above 0 and at most 1 (1 is off)"),
        ({"top_k": vocab + 1}, f"Top-k must be between 1 and {vocab} (the smallest vocabulary here), or 0"),
        ({"seed": "abc"}, "Seed must be a whole number from 0 to 4294967295, or empty for a random text"),
        ({"seed": "-1"}, "Seed must be a whole number"),
        ({"prompt": "x" * 101}, "The prompt has 101 characters; the limit is 100"),
    ]:
        status, *outputs = ask(client, **settings)
        assert status.startswith(f"**Error:** {message}")
        assert "--" not in status  # worded for the page, not for the command line
        assert outputs == ["", "", None, None]
    with pytest.raises(AppError, match="greater than maximum value 120"):  # the length cap, from Gradio
        ask(client, max_new_tokens=121)
    assert ask(client)[0].startswith("Done")
    assert ask(client, temperature=0.0, greedy=True)[0].startswith("Done")  # greedy needs no temperature


def test_empty_seed_is_random_and_greedy_is_the_most_likely_text(client, runs):
    first, second = (ask(client, seed="", max_new_tokens=60)[1] for _ in range(2))
    assert first != second  # a fresh random seed each time
    greedy = ask(client, seed="", greedy=True, max_new_tokens=30)[1:3]
    assert list(greedy) == [run.generate("ROMEO:", max_new_tokens=30, greedy=True) for run in runs]


def test_streaming_the_time_limit_and_the_queue_size(trained_run):
    class SlowRun(tinylm.LoadedModel):
        def stream(self, prompt="", **sampling):
            for piece in super().stream(prompt, **sampling):
                time.sleep(0.05)
                yield piece

    slow = SlowRun(trained_run.module, trained_run.tokenizer, trained_run.config, trained_run.run_dir)
    demo = serve([slow], limits=Limits(max_seconds=1.0, max_new_tokens=100, concurrency=1, max_queue=1),
                 block=False)
    try:
        client = Client(demo.local_url, verbose=False, analytics_enabled=False, download_files=False)
        job = client.submit("A", 1.0, 0, 1.0, 100, "1", False, api_name="/generate")
        deadline = time.monotonic() + 30
        while not job.outputs() and time.monotonic() < deadline:  # until it generates
            time.sleep(0.01)
        others = [client.submit("B", 1.0, 0, 1.0, 100, "1", False, api_name="/generate") for _ in range(2)]
        status, text, _ = job.result(timeout=60)
        messages = job.outputs()
        outcomes = []
        for other in others:  # one waits its turn; then, with one generating and one waiting, no room
            try:
                outcomes.append(other.result(timeout=60)[0])
            except QueueError as e:
                outcomes.append(str(e))
        assert sorted(o.split("!")[0] for o in outcomes) == ["Queue is full",
                                                             "Stopped at the time limit of 1 s."]
    finally:
        demo.close()
    assert status == "Stopped at the time limit of 1 s."
    # stopped part way (1 s of tokens taking 0.05 s or more each), keeping what it had
    assert 1 <= len(trained_run.tokenizer.encode(text[1:])) <= 1.0 / 0.05 + 1
    growing = [m[1] for m in messages if m[0] == "Generating…"]  # the text as it streamed
    assert len(growing) >= 3
    assert all(b.startswith(a) and len(b) > len(a) for a, b in itertools.pairwise(growing))
    assert text.startswith(growing[-1])


def test_fifty_concurrent_requests_are_all_served_within_the_concurrency_limit(trained_run):
    class CountingRun(tinylm.LoadedModel):
        """Counts the generations in progress at once."""
        lock, active, most = threading.Lock(), 0, 0

        def stream(self, prompt="", **sampling):
            with CountingRun.lock:
                CountingRun.active += 1
                CountingRun.most = max(CountingRun.most, CountingRun.active)
            try:
                yield from super().stream(prompt, **sampling)
            finally:
                with CountingRun.lock:
                    CountingRun.active -= 1

    run = CountingRun(trained_run.module, trained_run.tokenizer, trained_run.config, trained_run.run_dir)
    demo = serve([run], limits=Limits(concurrency=2, max_queue=64, max_new_tokens=100), block=False)
    try:
        client = Client(demo.local_url, verbose=False, analytics_enabled=False, download_files=False,
                        max_workers=50)

        jobs = [client.submit(f"request {i}", 0.8, 0, 1.0, 30, str(i), False, api_name="/generate")
                for i in range(50)]
        deadline = time.monotonic() + 120
        results = [job.result(timeout=max(0.1, deadline - time.monotonic())) for job in jobs]
        assert [r[0].split(" in ")[0] for r in results] == ["Done"] * 50
        assert all(text.startswith(f"request {i}") for i, (_, text, _) in enumerate(results))
        assert CountingRun.most == 2 and CountingRun.active == 0  # the queue ran two at a time, none stuck
        assert client.predict("after", 0.8, 0, 1.0, 10, "1", False, api_name="/generate")[0].startswith("Done")
    finally:
        demo.close()


def test_playground_in_a_real_browser(server, runs, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install the Debian package chromium for the browser test")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    shots = Path(os.environ.get("TINYLM_SCREENSHOT_DIR") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            outside = []
            page.on("request", lambda r: None if r.url.startswith(server) else outside.append(r.url))
            page.goto(server)
            for i, run in enumerate(runs):
                info = page.locator(f"#run-{i}-info").inner_text()
                assert run.run_dir.name in info and f"{run.num_parameters():,} parameters" in info
                assert run.module.describe() in info
            page.locator("#prompt textarea").fill("ROMEO:")
            page.locator("#seed").locator("textarea, input").first.fill("3")
            page.locator("#generate").click()
            page.wait_for_function("document.querySelector('#status').innerText.startsWith('Done')",
                                   timeout=30_000)
            for i in range(len(runs)):
                text = page.locator(f"#output-{i} textarea").input_value()
                assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")
                bars = page.locator(f"#dist-{i} svg [aria-roledescription='bar']")
                bars.first.wait_for(timeout=10_000)
                assert bars.count() == 20
            page.screenshot(path=str(shots / "playground.png"), full_page=True)

            page.locator("#temperature input[type=number]").fill("0")
            page.locator("#temperature input[type=number]").press("Enter")
            page.locator("#generate").click()
            page.wait_for_function("document.querySelector('#status').innerText.startsWith('Error')",
                                   timeout=30_000)
            assert "Temperature must be above 0 (or tick Greedy" in page.locator("#status").inner_text()
            assert page.locator("#output-0 textarea").input_value() == ""
            assert outside == []
        finally:
            browser.close()
    assert (shots / "playground.png").stat().st_size > 10_000


def test_a_fresh_page_writes_a_new_text_each_time(server, runs):
    """The seed box starts empty in the browser, and empty means random: two presses, two texts."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install the Debian package chromium for the browser test")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server)
            assert page.locator("#seed").locator("textarea, input").first.input_value() == ""
            page.locator("#prompt textarea").fill("ROMEO:")
            # Count the status' changes to "Done…": each press ends with one (the text alone may repeat).
            page.evaluate("""() => {
                window.done = 0;
                const status = document.querySelector('#status');
                new MutationObserver(() => {
                    const finished = status.innerText.startsWith('Done');
                    if (finished && !window.wasDone) window.done += 1;
                    window.wasDone = finished;
                }).observe(status, {subtree: true, childList: true, characterData: true});
            }""")

            def press(times_done: int) -> str:
                page.locator("#generate").click()
                page.wait_for_function(f"window.done >= {times_done}", timeout=60_000)
                text, before = page.locator("#output-0 textarea").input_value(), None
                while text != before:  # the text box may render its last update just after the status
                    page.wait_for_timeout(300)
                    before, text = text, page.locator("#output-0 textarea").input_value()
                return text

            texts = [press(1), press(2)]
            print(f"fresh page, two presses: {texts[0]!r} / {texts[1]!r}")
            assert all(t.startswith("ROMEO:") and len(t) > len("ROMEO:") for t in texts)
            assert texts[0] != texts[1]

            page.locator("#greedy input").check()  # greedy: the run's most likely text, whatever the seed
            text = press(3)
            assert text == runs[0].generate("ROMEO:", max_new_tokens=min(200, LIMITS.max_new_tokens), greedy=True)
        finally:
            browser.close()
