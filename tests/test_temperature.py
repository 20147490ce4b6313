"""Temperature: the softmax plot, the text statistics and the report (tinylm/lab/temperature.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import tinylm
from tinylm.errors import TinyLMError
from tinylm.lab.temperature import distinct, parse_temperatures, real_words, repetition, unrecognisable_from

PNG = b"\x89PNG"


def test_parse_temperatures():
    assert parse_temperatures("1, 0.3,0.8,1.0") == [0.3, 0.8, 1.0]
    for bad in ["", "0.5,hot", "0.5,0", "-1", "nan"]:
        with pytest.raises(TinyLMError):
            parse_temperatures(bad)


def test_tempered_softmax_sharpens_and_flattens():
    logits = torch.tensor([2.0, 1.0, 0.0])
    cold, warm = tinylm.tempered_softmax(logits, 0.2), tinylm.tempered_softmax(logits, 5.0)
    assert cold[0] > 0.99 and (warm.max() - warm.min()) < 0.2
    torch.testing.assert_close(tinylm.tempered_softmax(logits, 1.0), logits.softmax(-1))


def test_text_statistics():
    samples = [["the", "cat", "the", "cat", "the", "cat"], ["The", "dog", "xqz"]]
    assert real_words(samples, {"the", "cat", "dog"}) == pytest.approx(8 / 9)  # case-insensitive
    assert distinct(samples, 1) == pytest.approx(5 / 9)
    assert distinct(samples, 2) == pytest.approx(4 / 7)  # ("the","cat") x3, ("cat","the") x2, 2 others
    assert repetition(samples) == pytest.approx(2 / 5)  # 4 + 1 trigrams; "the cat the", "cat the cat" repeat
    assert real_words([[]], set()) is None and distinct([["a"]], 2) is None


def test_unrecognisable_from_interpolates_the_crossing():
    assert unrecognisable_from([0.5, 1.0, 2.0], [0.9, 0.7, 0.3], 0.5) == pytest.approx(1.5)
    assert unrecognisable_from([0.5, 1.0], [0.9, 0.8], 0.5) is None
    assert unrecognisable_from([0.5, 1.0], [0.4, 0.1], 0.5) == 0.5


def test_softmax_plot_from_random_logits_and_from_a_run(trained_run, tmp_path):
    tinylm.plot_softmax(out=tmp_path / "random.png", top=8)
    tinylm.plot_softmax(trained_run, [0.5, 1, 2], prompt="ROMEO:", out=tmp_path / "run.png")
    for name in ("random.png", "run.png"):
        assert (tmp_path / name).read_bytes()[:4] == PNG


def test_report_measures_that_heat_makes_words_unrecognisable(trained_run, tmp_path):
    report = tinylm.temperature_report(trained_run, [0.3, 5.0], ["ROMEO:"], tmp_path / "report", samples=2,
                                       max_new_tokens=120, echo=lambda s: None)
    cold, hot = report.stats
    assert cold.real_words > hot.real_words + 0.2  # at T = 5 the letters are close to uniform noise
    assert report.unrecognisable_from is not None and 0.3 <= report.unrecognisable_from <= 5.0
    assert report.reference.real_words > 0.8  # held-out Shakespeare is mostly known words
    saved = json.loads((tmp_path / "report" / "temperature.json").read_text())
    assert [s["label"] for s in saved["stats"]] == ["0.3", "5"] and len(saved["samples"]) == 4
    markdown = (tmp_path / "report" / "temperature.md").read_text()
    assert "| 0.3 | 2 |" in markdown and "no longer recognisable" in markdown and "ROMEO:" in markdown
    assert (tmp_path / "report" / "temperature.png").read_bytes()[:4] == PNG


def test_cli_plot_softmax_without_a_run_and_a_bad_flag(tmp_path):
    out = tmp_path / "softmax.png"
    result = subprocess.run([sys.executable, "-m", "tinylm", "plot", "softmax", "--temperatures", "0.5,1,3",
                             "--out", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and out.read_bytes()[:4] == PNG
    result = subprocess.run([sys.executable, "-m", "tinylm", "temperature", str(tmp_path), "--temperatures",
                             "0.5,cold"], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
