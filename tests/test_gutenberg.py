"""Project Gutenberg texts: `--data gutenberg:ID` (looked up, cached, downloaded when online, the licence text
cut off) and `--strip-gutenberg` for a local file. No network: a download is served from a local file URL."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tinylm
from tinylm.data import load_corpus, load_split, sources
from tinylm.errors import TinyLMError

BOOK = "It is a truth universally acknowledged, that a single man in possession\nof a good fortune.\n" * 30

# The framing of a real Project Gutenberg file (pg1342.txt, 2024), with its Windows line ends and BOM.
HEADER = ("\ufeffThe Project Gutenberg eBook of Pride and Prejudice\r\n\r\n"
          "This ebook is for the use of anyone anywhere in the United States and\r\n"
          "most other parts of the world at no cost and with almost no restrictions\r\n\r\n"
          "Title: Pride and Prejudice\r\n\r\nAuthor: Jane Austen\r\n\r\n"
          "*** START OF THE PROJECT GUTENBERG EBOOK PRIDE AND PREJUDICE ***\r\n\r\n\r\n")
FOOTER = ("\r\n\r\n\r\n*** END OF THE PROJECT GUTENBERG EBOOK PRIDE AND PREJUDICE ***\r\n\r\n"
          "Updated editions will replace the previous one--the old editions will\r\n"
          "be renamed.\r\n\r\nSTART: FULL LICENSE\r\n\r\nTHE FULL PROJECT GUTENBERG LICENSE\r\n")
# An older file (2008-style): "THIS PROJECT GUTENBERG EBOOK", an "End of the Project Gutenberg EBook" line
OLD_HEADER = ("The Project Gutenberg EBook of Emma, by Jane Austen\n\n"
              "*** START OF THIS PROJECT GUTENBERG EBOOK EMMA ***\n\n")
OLD_FOOTER = ("\n\nEnd of the Project Gutenberg EBook of Emma, by Jane Austen\n\n"
              "*** END OF THIS PROJECT GUTENBERG EBOOK EMMA ***\n\n***** This file should be named 158.txt *****\n")


def gutenberg_file(body: str = BOOK) -> str:
    return HEADER + body.replace("\n", "\r\n") + FOOTER


def test_strip_gutenberg_keeps_only_the_book():
    assert sources.strip_gutenberg(gutenberg_file()) == BOOK
    assert sources.strip_gutenberg(OLD_HEADER + BOOK + OLD_FOOTER) == BOOK
    with pytest.raises(TinyLMError, match="not a Project Gutenberg text"):
        sources.strip_gutenberg(BOOK)


def test_strip_gutenberg_flag_on_a_local_file_and_in_training(tmp_path):
    path = tmp_path / "pg1342.txt"
    path.write_bytes(gutenberg_file().encode("utf-8"))
    assert load_corpus(str(path)).train.startswith("\ufeffThe Project Gutenberg")  # untouched without the flag
    assert load_corpus(str(path), strip_gutenberg_text=True).train == BOOK
    train, val = load_split(tinylm.DataConfig(source=str(path), strip_gutenberg=True))
    assert train + val == BOOK and "Gutenberg" not in train + val
    # The CLI flag reaches the DataConfig saved with the run.
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "tinylm", "train", "--data", str(path), "--strip-gutenberg",
                             "--model", "markov", "--order", "3", "--block-size", "16", "--out", str(out), "--quiet"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert tinylm.load(out).config.data.strip_gutenberg is True


def test_gutenberg_id_downloads_verifies_caches_and_strips(tmp_path, monkeypatch):
    served = tmp_path / "served" / "pg1342.txt"
    served.parent.mkdir()
    served.write_bytes(gutenberg_file().encode("utf-8"))
    monkeypatch.delenv("TINYLM_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # (tinylm reads it as "offline" too)
    monkeypatch.delenv("TINYLM_DATA_DIR", raising=False)
    monkeypatch.setattr(sources, "GUTENBERG_URL", served.as_uri().replace("1342", "{id}"))
    assert load_corpus("gutenberg:1342").train == BOOK
    cached = sources.cache_dir() / "data" / "gutenberg" / "pg1342.txt"
    assert cached.read_bytes() == served.read_bytes()  # the file as published is cached, cut when read
    served.unlink()  # from now on only the cache has it
    assert load_corpus("gutenberg:1342").train == BOOK

    # A page that is not a Gutenberg text (an error page, another file) is refused and not cached.
    other = tmp_path / "served" / "pg11.txt"
    other.write_text("<html>" + "x" * 5000 + "</html>", encoding="utf-8")
    with pytest.raises(TinyLMError, match="failed verification"):
        load_corpus("gutenberg:11")
    assert not (sources.cache_dir() / "data" / "gutenberg" / "pg11.txt").exists()


def test_gutenberg_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(TinyLMError) as error:
        load_corpus("gutenberg:1342")
    message = str(error.value)
    assert "\n" not in message and "offline" in message
    assert str(tmp_path / "data" / "gutenberg" / "pg1342.txt") in message
    assert "https://www.gutenberg.org/cache/epub/1342/pg1342.txt" in message
    # ... and the file put there is used (and cut)
    (tmp_path / "data" / "gutenberg").mkdir(parents=True)
    (tmp_path / "data" / "gutenberg" / "pg1342.txt").write_text(gutenberg_file(), encoding="utf-8")
    assert load_corpus("gutenberg:1342").train == BOOK
    with pytest.raises(TinyLMError, match="is a number"):
        load_corpus("gutenberg:pride")


def test_gutenberg_offline_on_the_command_line_is_one_line_exit_2(tmp_path):
    env = {"PATH": "", "TINYLM_OFFLINE": "1", "TINYLM_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "tinylm", "train", "--data", "gutenberg:84", "--out",
                             str(tmp_path / "run")], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "gutenberg/pg84.txt" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()
