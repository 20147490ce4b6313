#!/usr/bin/env bash
# Example 5: word-level generation.
#
#   Instead of characters, the tokens are words and punctuation marks (`--tokenizer word`). Every token
#   the model writes is then a real word of the training text, so no misspellings; the price is a
#   vocabulary of thousands of tokens instead of 65, fewer tokens to learn from, and <unk> for the words
#   left out of the vocabulary. An LSTM is compared with the classic word model, a trigram Markov chain.
#
#   bash examples/05_word_level.sh                    # tens of minutes on a laptop CPU
#   TINYLM_QUICK=1 bash examples/05_word_level.sh     # seconds (what the tests run)
#
# Outputs in $OUT (default runs/examples/05_word_level):
#   lstm/, markov/            run directories (loss.png, metrics.jsonl with val_bits_per_char, ...)
#   lstm.txt, markov.txt      a sample of each from the same prompt
set -euo pipefail

OUT=${OUT:-runs/examples/05_word_level}
QUICK=${TINYLM_QUICK:-0}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROMPT="MENENIUS:"                 # a speaker of Coriolanus, at the start of Tiny Shakespeare
mkdir -p "$OUT"

if [ "$QUICK" != "0" ]; then
    python "$HERE/excerpt.py" shakespeare 40000 > "$OUT/shakespeare-small.txt"
    DATA="$OUT/shakespeare-small.txt"
    SIZE=(--embed 32 --hidden 96 --layers 1 --epochs 4 --batch-size 16 --warmup-steps 5 --lr 1e-2)
else
    DATA=shakespeare
    SIZE=(--embed 128 --hidden 256 --layers 2 --dropout 0.3 --epochs 20)
fi

# 1. A word-level LSTM. --min-freq 2: words seen only once become <unk>. They are mostly names and rare
#    forms the model could not learn from a single example anyway; on Tiny Shakespeare, dropping them
#    halves the vocabulary (13,476 -> 7,117 tokens, so the output layer) while <unk> goes from 4.3% to 6.0%
#    of the validation words. --block-size 32 counts words here: about 120 characters of context.
tinylm train --data "$DATA" --tokenizer word --min-freq 2 --model lstm --block-size 32 "${SIZE[@]}" \
    --sample-prompt "$PROMPT" --out "$OUT/lstm" --overwrite --quiet

# 2. The baseline: a word trigram model (each word predicted from the two before it), counted in one pass.
tinylm train --data "$DATA" --tokenizer word --min-freq 2 --model markov --order 3 --block-size 32 \
    --sample-prompt "$PROMPT" --out "$OUT/markov" --overwrite --quiet

# 3. Sample both from the same prompt. The word tokenizer puts one space between tokens when decoding
#    ("lord , I" rather than "lord, I"): words are what it keeps, not spacing.
for MODEL in lstm markov; do
    echo "--- $MODEL"
    tinylm sample "$OUT/$MODEL" --prompt "$PROMPT" --temperature 0.8 --max-new-tokens 60 --seed 1 \
        | tee "$OUT/$MODEL.txt"
done

echo
# Bits per character compare models whatever their tokenizer (lower is better); a word model's figure
# leaves out what <unk> hides, so compare word models with each other.
echo "Validation bits per character: 'bpc' in the epoch lines above, val_bits_per_char in"
echo "$OUT/lstm/metrics.jsonl and $OUT/markov/metrics.jsonl."
