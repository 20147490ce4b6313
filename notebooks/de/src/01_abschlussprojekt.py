# %% [markdown]
# # 01 · Abschlussprojekt: ein eigenes Decoder-only-Sprachmodell
#
# Du baust ein autoregressives Sprachmodell wie GPT – klein genug für die CPU (unter einer Million Parameter) – und
# schreibst den Trainingsloop selbst. tinylm übernimmt, was drumherum anfällt: die Daten, einen Tokenizer aus
# `transformers`, die Auswertung auf dem Validierungstext, die Model Card und das Hochladen auf den Hugging Face Hub.
#
# Was das Projekt verlangt, in Kürze:
#
# | Teil | Anforderung |
# | --- | --- |
# | Modell | Decoder-only aus `torch.nn`, autoregressiv, unter 1 Mio. Parameter |
# | Tokenizer | aus Hugging Face `transformers` (`AutoTokenizer`) |
# | Training | eigener Loop (kein `Trainer`), mindestens 3 Epochen, besser 5 |
# | Evaluation | Validierungs-Loss nach jeder Epoche, er muss sichtbar sinken |
# | Logging | Trainings- und Eval-Loss mit Weights & Biases |
# | Veröffentlichung | Modell auf den Hub, mit Model Card (Beschreibung und Tags) |
#
# Mit `tinylm project check` prüfst du am Ende die ganze Abgabe; `tinylm project readme` schreibt die README dazu.

# %% tags=["setup"]

# %%
# %matplotlib inline
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn as nn
import torch.nn.functional as F

from tinylm import course
from tinylm.course import project

torch.manual_seed(0)
Path(OUT).mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Daten und Tokenizer
#
# Tiny Shakespeare, 90 % zum Trainieren, 10 % zum Validieren. Der Tokenizer kommt aus `transformers`. GPT-2s eigener
# Tokenizer hat 50 257 Tokens – schon das Embedding hätte bei einer Breite von 64 über 3,2 Millionen Parameter
# (50 257 × 64). Darum trainiert `project.make_tokenizer` denselben Typ (Byte-Level-BPE) mit 1 024 Tokens neu auf
# unserem Text; laden lässt er sich mit `AutoTokenizer.from_pretrained(...)`.

# %%
train_text, val_text = project.load_text("shakespeare")
if QUICK:
    train_text, val_text = train_text[:30_000], val_text[:5_000]
VOCAB = 300 if QUICK else 1024
tokenizer = project.make_tokenizer(train_text, Path(OUT) / "tokenizer", vocab_size=VOCAB)
train_ids, val_ids = project.encode(tokenizer, train_text), project.encode(tokenizer, val_text)
print(f"{len(train_ids):,} Tokens zum Trainieren, {len(val_ids):,} zum Validieren")
print(tokenizer.tokenize("ROMEO: I will not go, my lord."))

# %% [markdown]
# ## Das Modell
#
# Ein Decoder-only-Transformer: Token-Embedding plus Positions-Embedding, einige Transformer-Blöcke mit **kausaler
# Maske** (jede Position sieht nur sich und die Positionen davor), eine LayerNorm und eine lineare Schicht auf das
# Vokabular. In PyTorch eignet sich dafür `nn.TransformerEncoderLayer` mit einer Maske aus
# `nn.Transformer.generate_square_subsequent_mask(T)` – ein `nn.TransformerDecoderLayer` bräuchte zusätzlich ein
# „Gedächtnis“ aus einem Encoder, das ein Decoder-only-Modell nicht hat.
#
# **Deine Aufgabe:** Schreibe `DecoderOnlyLM`. `forward(ids)` bekommt `(Batch, Länge)` und gibt Logits der Form
# `(Batch, Länge, vocab_size)` zurück.

# %%
BLOCK = 32 if QUICK else 64
SHAPE = dict(embed=32, heads=2, layers=2) if QUICK else dict(embed=128, heads=4, layers=4)


class DecoderOnlyLM(nn.Module):
    def __init__(self, vocab_size, block_size, embed=128, heads=4, layers=4, dropout=0.1):
        super().__init__()
        self.block_size = block_size
        # >>> LÖSUNG
        self.tokens = nn.Embedding(vocab_size, embed)
        self.positions = nn.Embedding(block_size, embed)
        layer = nn.TransformerEncoderLayer(embed, heads, dim_feedforward=2 * embed, dropout=dropout,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers)
        self.norm = nn.LayerNorm(embed)
        self.head = nn.Linear(embed, vocab_size)
        # <<< LÖSUNG

    def forward(self, ids):
        # >>> LÖSUNG
        length = ids.size(1)
        x = self.tokens(ids) + self.positions(torch.arange(length, device=ids.device))
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=ids.device)
        return self.head(self.norm(self.blocks(x, mask=mask, is_causal=True)))
        # <<< LÖSUNG


model = None
try:
    model = DecoderOnlyLM(len(tokenizer), BLOCK, **SHAPE)
except NotImplementedError:
    pass

# %%
course.check("decoder_model", model, vocab_size=len(tokenizer), block_size=BLOCK)

# %% [markdown]
# ## Der eigene Trainingsloop, mit W&B
#
# Weights & Biases zeichnet Trainings- und Eval-Loss auf. Ohne Anmeldung (`wandb login`) schreibt es offline in
# Dateien, die `wandb sync` später hochlädt.
#
# **Deine Aufgabe:** Schreibe den Loop: AdamW, je Epoche über `project.batches(train_ids, BLOCK, 32, seed=epoch)`
# iterieren (Vorwärtsdurchlauf, Cross-Entropy, `backward`, `step`), nach jeder Epoche
# `project.evaluate(model, val_ids, BLOCK)` aufrufen, beide Losses mit `wandb.log` loggen und
# `{"epoch": …, "train_loss": …, "val_loss": …}` an `history` anhängen.

# %%
import wandb

EPOCHS = 3 if QUICK else 5
mode = "online" if os.environ.get("WANDB_API_KEY") and not QUICK else "offline"
wandb_run = wandb.init(project="abschlussprojekt", dir=OUT, mode=mode, config={
    "block_size": BLOCK, **SHAPE, "epochs": EPOCHS, "lr": 3e-3, "vocab_size": len(tokenizer)})
history = []

# >>> LÖSUNG (Aufgabe: pass)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
for epoch in range(1, EPOCHS + 1):
    model.train()
    total, steps = 0.0, 0
    for x, y in project.batches(train_ids, BLOCK, batch_size=32, seed=epoch):
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total, steps = total + loss.item(), steps + 1
        wandb.log({"train/loss": loss.item()})
    val_loss = project.evaluate(model, val_ids, BLOCK)
    wandb.log({"epoch": epoch, "train/epoch_loss": total / steps, "eval/loss": val_loss})
    history.append({"epoch": epoch, "train_loss": total / steps, "val_loss": val_loss})
    print(f"Epoche {epoch}: Training {total / steps:.3f}, Validierung {val_loss:.3f}")
# <<< LÖSUNG
wandb_run.finish()

# %%
course.check("training_history", history)

# %%
if history:
    plt.figure(figsize=(6, 3.5))
    plt.plot([r["epoch"] for r in history], [r["train_loss"] for r in history], "o-", label="Training")
    plt.plot([r["epoch"] for r in history], [r["val_loss"] for r in history], "s-", label="Validierung")
    plt.xlabel("Epoche")
    plt.ylabel("Cross-Entropy (nats je Token)")
    plt.legend()
    plt.grid(alpha=0.3)
    plt.savefig(Path(OUT) / "val_loss.png", dpi=100, bbox_inches="tight")
    plt.show()

# %% [markdown]
# ## Text generieren
#
# Autoregressiv: das Modell sagt das nächste Token voraus, es wird angehängt, und alles beginnt von vorn (mit den
# letzten `BLOCK` Tokens).

# %%
@torch.no_grad()
def generate(model, prompt, max_new_tokens=60, temperature=0.8):
    model.eval()
    ids = project.encode(tokenizer, prompt)[None]
    for _ in range(max_new_tokens):
        logits = model(ids[:, -BLOCK:])[0, -1] / temperature
        ids = torch.cat([ids, torch.multinomial(torch.softmax(logits, -1), 1)[None]], dim=1)
    return tokenizer.decode(ids[0])


if model is not None:
    print(generate(model, "ROMEO:"))

# %% [markdown]
# ## Model Card und Hub
#
# `project.save` schreibt den Ordner, der auf den Hub kommt: die Gewichte (`model.safetensors`), den Tokenizer, den
# Verlauf der Losses und die **Model Card** (`README.md`) mit deiner Beschreibung und deinen Tags. `project.push`
# lädt ihn hoch, wenn `HF_REPO` gesetzt ist (`NAME/REPO`) und du angemeldet bist (`hf auth login`); sonst sagt es,
# wie.

# %%
if model is not None and history:
    sample = generate(model, "ROMEO:")
    folder = project.save(model, tokenizer, Path(OUT) / "abgabe", history,
                          description="Ein kleiner Decoder-only-Transformer, auf Tiny Shakespeare trainiert.",
                          tags=["text-generation", "shakespeare", "decoder-only", "kursprojekt"],
                          config={"model": {"vocab_size": len(tokenizer), "block_size": BLOCK, **SHAPE,
                                            "ff": 2 * SHAPE["embed"]},
                                  "training": {"optimizer": "AdamW", "lr": 3e-3, "batch_size": 32},
                                  "data": "Tiny Shakespeare", "prompt": "ROMEO:", "sample": sample})
    print(project.push(folder, os.environ.get("HF_REPO")))
    print((folder / "README.md").read_text(encoding="utf-8")[:800])

# %% [markdown]
# ## Bonus: GPT-2 mit dem `Trainer` feinjustieren
#
# `tinylm.finetune` trainiert ein vortrainiertes Modell mit dem `Trainer` von `transformers` weiter, loggt mit W&B
# und schreibt einen Lauf, den `tinylm.push` mit Model Card hochlädt. Die Basis ist GPT-2 (124 Mio. Parameter, einmal
# vom Hub geladen). Im QUICK-Modus (und offline) vertritt sie ein winziges GPT, das tinylm zuerst trainiert.

# %%
import tinylm

if QUICK:
    stand_in = tinylm.RunConfig(data=tinylm.DataConfig(source=str(Path(OUT) / "text.txt"), block_size=32),
                                tokenizer=tinylm.TokenizerConfig(kind="bpe", vocab_size=300),
                                model=tinylm.model_config("gpt", embed=32, heads=2, layers=2),
                                train=tinylm.TrainConfig(epochs=1, batch_size=16, sample_tokens=10))
    (Path(OUT) / "text.txt").write_text(train_text, encoding="utf-8")
    base = tinylm.train(stand_in, out=Path(OUT) / "basis", overwrite=True).run_dir
else:
    base = "gpt2"
(Path(OUT) / "bonus.txt").write_text(train_text[:20_000 if QUICK else 200_000], encoding="utf-8")
bonus = tinylm.finetune(base, str(Path(OUT) / "bonus.txt"), out=Path(OUT) / "gpt2-feinjustiert", overwrite=True,
                        config=tinylm.FinetuneConfig(epochs=1 if QUICK else 2, batch_size=16 if QUICK else 8,
                                                     block_size=32 if QUICK else 128, lr=3e-3 if QUICK else 5e-5,
                                                     logger="wandb", wandb_project="abschlussprojekt-bonus",
                                                     sample_prompt="ROMEO:", sample_tokens=40))
hub = tinylm.push(bonus.run_dir, os.environ.get("HF_REPO_BONUS") or "du/gpt2-shakespeare",
                  dry_run=None if os.environ.get("HF_REPO_BONUS") else Path(OUT) / "bonus-hub")
print("Hub:", hub)
print(bonus.generate("ROMEO:", max_new_tokens=40, temperature=0.8, seed=1))
