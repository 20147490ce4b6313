#!/usr/bin/env bash
# Example 3: news-title style generation in line mode, at several temperatures.
#
#   Each line of the corpus is one title. With --lines every title becomes one training example
#   `<eos> title <eos>`: the model learns how a title starts and where it ends, so sampling from an empty
#   prompt writes one new title and stops at <eos>. Then the same model is sampled at several
#   temperatures: low ones repeat the most common titles, high ones invent words.
#
#   bash examples/03_news_titles.sh                    # a few minutes on a laptop CPU
#   TINYLM_QUICK=1 bash examples/03_news_titles.sh     # seconds (what the tests run)
#   TITLES=my_titles.txt bash examples/03_news_titles.sh    # your own titles, one per line
#
# Outputs in $OUT (default runs/examples/03_news_titles):
#   titles.txt            the corpus (made up by examples/news_titles.py unless TITLES is given)
#   run/                  the run directory (loss.png, metrics.jsonl, samples.jsonl, ...)
#   samples.txt           new titles sampled at temperature 0.7, separated by lines of dashes
#   temperature/          temperature.md (samples at each temperature and their statistics),
#                         temperature.png (share of real words, variety and repetition against the
#                         temperature) and temperature.json (the same, for programs)
set -euo pipefail

OUT=${OUT:-runs/examples/03_news_titles}
QUICK=${TINYLM_QUICK:-0}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$OUT"

if [ "$QUICK" != "0" ]; then
    COUNT=1500; SIZE=(--embed 16 --hidden 128 --epochs 6 --batch-size 32 --warmup-steps 10 --lr 1e-2)
    SAMPLES=5;  REPORT=(--samples 3 --max-new-tokens 100)
else
    COUNT=5000; SIZE=(--embed 32 --hidden 256 --epochs 15 --batch-size 64)
    SAMPLES=10; REPORT=(--samples 8 --max-new-tokens 150)
fi

# 1. The corpus: one title per line.
if [ -n "${TITLES:-}" ]; then
    cp "$TITLES" "$OUT/titles.txt"
else
    python "$HERE/news_titles.py" "$COUNT" > "$OUT/titles.txt"
fi

# 2. Train a char-level LSTM in line mode. --block-size is the longest title the model sees whole (in
#    characters, plus the two <eos>); longer lines would be cut and the model would not see their end.
tinylm train --data "$OUT/titles.txt" --lines --block-size 80 --model lstm --layers 1 --dropout 0.1 \
    "${SIZE[@]}" --out "$OUT/run" --overwrite --quiet

# 3. New titles. With no --prompt a sample starts after <eos>, like every title did in training, and
#    generation stops at the next <eos>: one title per sample (the samples are separated by dashes).
tinylm sample "$OUT/run" --temperature 0.7 --num-samples "$SAMPLES" --seed 1 --max-new-tokens 150 \
    | tee "$OUT/samples.txt"

# 4. Several temperatures: the same seeds at each, so the samples differ only by the temperature. Low
#    temperatures repeat the most common titles; high ones invent words. temperature.md lists the samples
#    and measures them: the share of generated words that are real words of the corpus, their variety
#    (distinct-n) and repetition; temperature.png draws these against the temperature.
tinylm temperature "$OUT/run" --temperatures 0.3,0.7,1.0,1.5,2.0 "${REPORT[@]}" --out "$OUT/temperature"

echo
echo "samples: $OUT/samples.txt, report: $OUT/temperature/temperature.md,"
echo "figure: $OUT/temperature/temperature.png"
