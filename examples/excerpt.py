"""Print the first N characters of a text source (a built-in corpus such as `shakespeare`, or a file).

The examples use it in their QUICK mode to train on a small slice instead of the whole corpus:

    python examples/excerpt.py shakespeare 40000 > small.txt

Built-in corpora resolve like `tinylm train --data NAME` does: $TINYLM_DATA_DIR, then the cache, then a
verified download. The cut falls at the end of a line, so no word or line is split.
"""

from __future__ import annotations

import sys

from tinylm.data.sources import load_corpus


def excerpt(source: str, chars: int) -> str:
    text = load_corpus(source).train
    if len(text) <= chars:
        return text
    end = text.rfind("\n", 0, chars)
    return text[: end + 1 if end > 0 else chars]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/excerpt.py SOURCE CHARS")
    sys.stdout.write(excerpt(sys.argv[1], int(sys.argv[2])))
