# %% [markdown]
# # 04 · Dramen schreiben – fast wie Shakespeare (Aufgabe a–i, PyTorch Lightning)
#
# Ein zeichenbasiertes Sprachmodell lernt $p(x_{n+1} \mid x_n, \dots, x_{n-m})$: Aus den letzten $m = 40$ Zeichen
# sagt es das nächste voraus. Zieht man immer wieder ein Zeichen aus dieser Verteilung, entsteht neuer Text – im
# Stil des Textes, auf dem das Modell gelernt hat. Du schreibst die Teile selbst: den Datensatz (`CharDataset`),
# das Modell (`LitCharRNN`), die temperierte Softmax, das Training mit Early Stopping und das Generieren.
#
# Jede Aufgabe endet mit einer **Prüfzelle**. Solange eine Aufgabe offen ist, rechnet das Notebook mit tinylms
# Version weiter, damit du trotzdem bis zum Ende kommst.

# %% tags=["setup"]

# %%
# %matplotlib inline
from pathlib import Path

import lightning.pytorch as pl
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from lightning.pytorch.callbacks import EarlyStopping
from torch.utils.data import DataLoader, Dataset, random_split

from tinylm import course
from tinylm.data import load_corpus
from tinylm.evaluation.memorisation import generated_words
from tinylm.lab.temperature import real_words, unrecognisable_from

MAXLEN, STEP, PATIENCE = 40, 3, 5
MAX_EPOCHS = 2 if QUICK else 30
Path(OUT).mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)

# %% [markdown]
# ## Vorab: generative und diskriminative Modelle
#
# Ein **generatives** Modell lernt die gemeinsame Verteilung $p(X, y)$ – ohne Label $y$ die Verteilung $p(X)$ der
# Daten selbst – und kann deshalb neue Beispiele $X' \sim p(X)$ erzeugen. Ein **diskriminatives** Modell lernt nur
# $p(y \mid X)$: Es trennt Klassen, erzeugt aber nichts.
#
# **Frage:** Nenne je zwei Klassifikatoren beider Arten. Zu welcher Art gehört unser Sprachmodell?

# %% [markdown] tags=["answer"]
# Generative Klassifikatoren: der Naive-Bayes-Klassifikator (NB) und die lineare Diskriminanzanalyse (LDA); sie
# modellieren $p(X, y)$ und entscheiden mit dem Satz von Bayes. Diskriminative Klassifikatoren: die logistische
# Regression, Support Vector Machines (SVM), Entscheidungsbäume und Random Forests; sie modellieren nur
# $p(y \mid X)$ oder direkt die Grenze zwischen den Klassen. Unser Sprachmodell ist generativ: Es lernt
# $p(x_{n+1} \mid x_n, \dots)$, und durch wiederholtes Ziehen aus dieser Verteilung entsteht neuer Text.

# %% [markdown]
# ## (a) Den Text laden
#
# tinylm liefert Tiny Shakespeare (40 000 Zeilen aus Shakespeares Dramen) und prüft beim Herunterladen die
# Prüfsumme. Wir speichern den Text in `text` und als Datei, denn `CharDataset` liest aus einer Datei.

# %%
text = load_corpus("shakespeare").train
if QUICK:
    text = text[:20_000]
path = Path(OUT) / "shakespeare.txt"
path.write_text(text, encoding="utf-8")
print(f"{len(text):,} Zeichen, {len(set(text))} verschiedene")

# %% [markdown]
# ## (b) Zeichen kodieren
#
# **Deine Aufgabe:** Lege `char2idx` (Zeichen → Index) und `idx2char` (Index → Zeichen) über die sortierten
# verschiedenen Zeichen von `text` an.

# %%
# >>> LÖSUNG (Aufgabe: char2idx = idx2char = None)
chars = sorted(set(text))
char2idx = {c: i for i, c in enumerate(chars)}
idx2char = {i: c for i, c in enumerate(chars)}
# <<< LÖSUNG

# %%
course.check("char_maps", (char2idx, idx2char), text=text)

# %% [markdown]
# ## (c) Eine Textstelle ansehen

# %%
print(text[:500])

# %% [markdown]
# ## (d) Der Datensatz: Fenster von 40 Zeichen, alle 3 Zeichen
#
# Wir schneiden den Text in Zeichenketten der Länge `maxlen = 40`. Jede beginnt 3 Zeichen nach der vorigen
# (`step = 3`), so überlappen sie sich. Das Label jeder Kette ist das Zeichen **nach** ihr.
#
# **Deine Aufgabe:** Schreibe `__init__`: Text aus `data_dir` (dem Pfad der Textdatei) lesen, `self.char2idx`
# anlegen und die Listen `self.sequences` und `self.next_chars` füllen. `__len__` und `__getitem__` sind gegeben.

# %%
class CharDataset(Dataset):
    """Zeichenketten von maxlen Zeichen und das jeweils folgende Zeichen als Label."""

    def __init__(self, data_dir: str, maxlen: int = 40, step: int = 3):
        # >>> LÖSUNG
        text = Path(data_dir).read_text(encoding="utf-8")
        chars = sorted(set(text))
        self.char2idx = {c: i for i, c in enumerate(chars)}
        self.idx2char = {i: c for i, c in enumerate(chars)}
        self.sequences, self.next_chars = [], []
        for i in range(0, len(text) - maxlen, step):
            self.sequences.append(text[i:i + maxlen])
            self.next_chars.append(text[i + maxlen])
        # <<< LÖSUNG

    def __len__(self):
        return len(self.sequences)

    def __getitem__(self, idx):
        seq = self.sequences[idx]
        x = torch.tensor([self.char2idx[ch] for ch in seq], dtype=torch.long)
        y = torch.tensor(self.char2idx[self.next_chars[idx]], dtype=torch.long)
        return x, y


# %%
CharDataset = course.check("char_dataset", CharDataset)

# %%
dataset = CharDataset(str(path), maxlen=MAXLEN, step=STEP)
vocab_size = len(dataset.char2idx)
train_set, val_set = random_split(dataset, [0.9, 0.1], generator=torch.Generator().manual_seed(0))
print(f"{len(dataset):,} Beispiele: {len(train_set):,} zum Trainieren, {len(val_set):,} zum Validieren")

# %% [markdown]
# ## (e) Das Modell
#
# Eine Embedding-Schicht macht aus jedem Index einen dichten Vektor (sparsamer als One-Hot, und ähnliche Zeichen
# können ähnliche Vektoren bekommen). Ein LSTM liest die 40 Vektoren; sein **letzter** Zustand fasst das Fenster
# zusammen. Danach: Dropout, eine Zwischenschicht mit ReLU, noch einmal Dropout und eine Ausgabeschicht mit einem
# Logit je Zeichen. Die Verlustfunktion nimmt ganze Zahlen als Labels: kein One-Hot für die Ziele.
#
# **Deine Aufgabe:** Schreibe `LitCharRNN` mit genau dieser Signatur.

# %%
class LitCharRNN(pl.LightningModule):
    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden_size: int = 128, dropout: float = 0.2,
                 lr: float = 5e-3):
        super().__init__()
        self.lr = lr
        # >>> LÖSUNG
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, vocab_size)
        # <<< LÖSUNG

    def forward(self, x):
        # >>> LÖSUNG
        output, _ = self.lstm(self.embedding(x))
        last = self.dropout(output[:, -1])
        return self.out(self.dropout(F.relu(self.hidden(last))))
        # <<< LÖSUNG

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y), prog_bar=True)

    def configure_optimizers(self):
        # >>> LÖSUNG
        return torch.optim.Adam(self.parameters(), lr=self.lr)
        # <<< LÖSUNG


# %%
LitCharRNN = course.check("lit_char_rnn", LitCharRNN)

# %% [markdown]
# ## (f) Die temperierte Softmax
#
# $$p_\tau(j) = \frac{\exp(z_j / \tau)}{\sum_k \exp(z_k / \tau)}$$
#
# Bei kleinem $\tau$ bekommt der größte Wert fast alles, bei großem $\tau$ werden alle Zeichen fast gleich
# wahrscheinlich.
#
# **Deine Aufgabe:** Schreibe `tempered_softmax(preds, T)` für beliebige Zahlen (ein NumPy-Array) und plotte die
# Verteilung für mehrere Temperaturen.

# %%
def tempered_softmax(preds, T):
    # >>> LÖSUNG
    z = np.asarray(preds, dtype=np.float64) / T
    z = np.exp(z - z.max())  # das Maximum abziehen: kein Überlauf bei großen Werten
    return z / z.sum()
    # <<< LÖSUNG


# %%
tempered_softmax = course.check("tempered_softmax", tempered_softmax)

# %%
preds = np.sort(np.random.default_rng(1).normal(size=10) * 2)[::-1]
fig, ax = plt.subplots(figsize=(7, 3))
for T in (0.2, 0.5, 1.0, 2.0, 5.0):
    ax.plot(range(1, 11), tempered_softmax(preds, T), marker="o", label=f"T = {T}")
ax.set_xlabel("Rang des Werts")
ax.set_ylabel("Wahrscheinlichkeit")
ax.legend()
plt.show()

# %% [markdown]
# ## (g) Training mit Early Stopping
#
# Early Stopping beendet das Training, wenn der Validierungs-Loss `patience = 5` Epochen lang nicht mehr besser
# wird.
#
# **Deine Aufgabe:** Lege `early_stop` an.

# %%
# >>> LÖSUNG (Aufgabe: early_stop = None)
early_stop = EarlyStopping(monitor="val_loss", patience=PATIENCE, mode="min")
# <<< LÖSUNG

# %%
course.check("early_stopping", early_stop)

# %%
model = LitCharRNN(vocab_size)
trainer = pl.Trainer(max_epochs=MAX_EPOCHS, callbacks=[early_stop] if early_stop else [], logger=False,
                     enable_checkpointing=False, enable_model_summary=False)
trainer.fit(model, DataLoader(train_set, batch_size=128, shuffle=True), DataLoader(val_set, batch_size=256))
print(f"Validierungs-Loss nach {trainer.current_epoch} Epochen: {trainer.callback_metrics['val_loss']:.4f}")

# %% [markdown]
# ## (h) Texte bei verschiedenen Temperaturen
#
# **Deine Aufgabe:** Schreibe `generate_text(model, seed_text, length, temperature)`: Nimm die letzten 40 Zeichen,
# berechne die Logits, ziehe das nächste Zeichen aus `tempered_softmax(logits, temperature)` und hänge es an –
# `length` Mal.

# %%
def generate_text(model, seed_text, length=200, temperature=1.0):
    # >>> LÖSUNG
    model.eval()
    text = seed_text
    with torch.no_grad():
        for _ in range(length):
            window = torch.tensor([[dataset.char2idx[c] for c in text[-MAXLEN:]]])
            probs = tempered_softmax(model(window)[0].numpy(), temperature)
            text += dataset.idx2char[int(np.random.choice(len(probs), p=probs))]
    return text
    # <<< LÖSUNG


# %%
generate = course.check("generate_text", generate_text, model=model, char2idx=dataset.char2idx)

# %%
temperatures = [0.2, 0.5, 1.0, 1.5, 2.0]
samples = {}
for T in temperatures:
    samples[T] = generate(model, "ROMEO:\n", 150 if QUICK else 400, T)
    print(f"--- T = {T}\n{samples[T]}\n")

# %% [markdown]
# Statt nur hinzusehen, messen wir: Welcher Anteil der erzeugten Wörter kommt im Trainingstext vor?

# %%
vocabulary = {w.lower() for w in generated_words(text)}
shares = [real_words([generated_words(samples[T])], vocabulary) for T in temperatures]
for T, share in zip(temperatures, shares):
    print(f"T = {T}: {share:.0%} echte Wörter" if share is not None else f"T = {T}: keine Wörter")
limit = unrecognisable_from(temperatures, shares, threshold=0.5)
print("Gemessen: weniger als die Hälfte echter Wörter ab T ≈", f"{limit:.2f}" if limit else "nie (bis T = 2)")

# %% [markdown]
# **Was beobachten Sie? Ab welcher Temperatur sind Wörter nicht mehr erkennbar?**

# %% [markdown] tags=["answer"]
# Bei kleinen Temperaturen (0.2) nimmt das Modell fast immer das wahrscheinlichste Zeichen: Der Text besteht aus
# echten, häufigen Wörtern, wiederholt sich aber oft in Schleifen. Um T = 1 wird er abwechslungsreicher und sieht
# am ehesten nach Shakespeare aus – mit Sprecher in Großbuchstaben, Zeilen und Satzzeichen. Darüber zieht das
# Modell immer öfter unwahrscheinliche Zeichen: Wörter zerfallen. Die Messung oben sagt, ab welcher Temperatur
# weniger als die Hälfte der Wörter im Trainingstext vorkommt. Je besser das Modell trainiert ist, desto höher
# liegt diese Grenze; im QUICK-Modus ist es so schwach, dass die Wörter schon bei kleinen Temperaturen zerfallen.

# %% [markdown]
# ## (i) Ein anderer Text: Goethes Faust
#
# Dasselbe Rezept auf Deutsch. tinylm liefert Faust I und II (`"faust"`, aus dem Projekt Gutenberg, ohne dessen
# Lizenztext). Jedes andere Gutenberg-Buch geht genauso: `load_corpus("gutenberg:ID")`.

# %%
faust = load_corpus("faust").train[: 20_000 if QUICK else None]
faust_path = Path(OUT) / "faust.txt"
faust_path.write_text(faust, encoding="utf-8")
faust_set = CharDataset(str(faust_path), maxlen=MAXLEN, step=STEP)
faust_train, faust_val = random_split(faust_set, [0.9, 0.1], generator=torch.Generator().manual_seed(0))
faust_model = LitCharRNN(len(faust_set.char2idx))
pl.Trainer(max_epochs=MAX_EPOCHS, callbacks=[EarlyStopping(monitor="val_loss", patience=PATIENCE)], logger=False,
           enable_checkpointing=False, enable_model_summary=False).fit(
    faust_model, DataLoader(faust_train, batch_size=128, shuffle=True), DataLoader(faust_val, batch_size=256))
dataset = faust_set  # generate_text liest die Zeichen aus `dataset`
generate_faust = course.check("generate_text", generate_text, model=faust_model, char2idx=faust_set.char2idx,
                              seed_text="FAUST:\n")
print(generate_faust(faust_model, "FAUST:\nHabe nun", 300, 0.8))
