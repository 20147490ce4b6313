#!/usr/bin/env bash
# Example 4: the classic Shakespeare LSTM exercise, then the same on another public-domain book.
#
#   The exercise: cut the text into windows of 40 characters every 3 characters (maxlen 40, step 3); a
#   many-to-one LSTM reads a window and predicts the one character that follows it; train with early
#   stopping (patience 5: stop after 5 epochs without a better validation loss); look at the tempered
#   softmax of the next character; sample at several temperatures. `--preset exercise` is that recipe
#   (one LSTM layer of 128, an MLP head with dropout, Adam, batch 128).
#
#   bash examples/04_shakespeare_exercise.sh                      # Tiny Shakespeare only; an hour or more
#   BOOK=pride.txt bash examples/04_shakespeare_exercise.sh       # ... then the same on your book
#   TINYLM_QUICK=1 BOOK=some.txt bash examples/04_shakespeare_exercise.sh   # seconds (what the tests run)
#
# Another public-domain book, when you are online: any Project Gutenberg plain-text file, e.g.
#   curl -L -o pride.txt https://www.gutenberg.org/cache/epub/1342/pg1342.txt     # Pride and Prejudice
# (The file starts and ends with Project Gutenberg's licence text; the model learns it too unless you cut
# it off: keep what lies between the "*** START OF" and "*** END OF" lines.)
#
# Outputs in $OUT (default runs/examples/04_shakespeare_exercise), for each text NAME (shakespeare, book):
#   NAME/                      the run directory: loss.png (training and validation loss per epoch; the
#                              best epoch is marked), metrics.jsonl, samples.jsonl, summary.json
#                              (stop_reason: early_stopping when the patience ran out)
#   NAME/softmax.png           the next-character distribution after a 40-character seed at T = 0.2, 0.5,
#                              1 and 1.2
#   NAME-temperature/          temperature.md (samples at each temperature), temperature.png, .json
set -euo pipefail

OUT=${OUT:-runs/examples/04_shakespeare_exercise}
QUICK=${TINYLM_QUICK:-0}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPERATURES=0.2,0.5,1.0,1.2       # the exercise's four temperatures
# A 40-character seed, like the exercise's (maxlen 40). It ends with a space, where many next characters
# are plausible, so the temperature visibly changes the distribution.
PROMPT="Shall I compare thee to a summer's day? "
mkdir -p "$OUT"

if [ "$QUICK" != "0" ]; then
    # A 15,000-character slice, a smaller LSTM, 2 epochs: every step runs, the model stays poor.
    python "$HERE/excerpt.py" shakespeare 15000 > "$OUT/shakespeare-small.txt"
    SHAKESPEARE="$OUT/shakespeare-small.txt"
    SIZE=(--embed 32 --hidden 64 --epochs 2 --warmup-steps 5 --sample-tokens 60)
    REPORT=(--samples 2 --max-new-tokens 100)
else
    SHAKESPEARE=shakespeare
    # Up to 50 epochs; early stopping usually ends the run well before.
    SIZE=(--epochs 50)
    REPORT=(--samples 4 --max-new-tokens 400)
fi

# The three steps of the exercise, for one text.
exercise() {
    local name=$1 data=$2
    # 1. Train. --preset exercise sets --target last --maxlen 40 --step 3 and --patience 5; the flags given
    #    after it (sizes, epochs) override it. The validation split is the last 10% of the text.
    tinylm train --preset exercise --data "$data" "${SIZE[@]}" --out "$OUT/$name" --overwrite --quiet

    # 2. The tempered softmax: the model's real next-character distribution after the seed, at each
    #    temperature. Low T sharpens it towards the most likely character, high T flattens it towards
    #    uniform noise; the legend gives each curve's entropy.
    tinylm plot softmax "$OUT/$name" --prompt "$PROMPT" --temperatures "$TEMPERATURES" \
        --out "$OUT/$name/softmax.png"

    # 3. The temperature sweep: samples from the seed at each temperature (the same random seeds at each,
    #    so they differ only by the temperature) and their statistics: real words, variety, repetition.
    tinylm temperature "$OUT/$name" --prompts "$PROMPT" --temperatures "$TEMPERATURES" "${REPORT[@]}" \
        --out "$OUT/$name-temperature"
}

exercise shakespeare "$SHAKESPEARE"

if [ -n "${BOOK:-}" ]; then
    # The same recipe on another book: only the text changes.
    exercise book "$BOOK"
else
    echo "BOOK is not set: skipping the second book. Download a public-domain one, e.g."
    echo "  curl -L -o pride.txt https://www.gutenberg.org/cache/epub/1342/pg1342.txt"
    echo "then run: BOOK=pride.txt bash $0"
fi
