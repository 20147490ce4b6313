# %% [markdown]
# # 02 · Generative Netzwerke: Nachrichtentitel mit Keras
#
# Ein RNN kann nicht nur klassifizieren: Gibt jede Zelle eine Ausgabe aus, entsteht eine **Folge** – und damit
# Text. Wir trainieren ein zeichenbasiertes LSTM auf den Titeln von AG News. In jedem Schritt liest es einen Titel
# Zeichen für Zeichen und soll an jeder Stelle das nächste Zeichen vorhersagen, am Ende das Zeichen `<eos>`
# (*end of sequence*).
#
# Wir arbeiten mit **Keras 3** und dem Backend **PyTorch** (dieselbe Keras-API wie mit TensorFlow). Im zweiten
# Teil trainiert tinylm dasselbe im *Zeilenmodus*, auf denselben Titeln.

# %% tags=["setup"]

# %%
os.environ.setdefault("KERAS_BACKEND", "torch")  # vor dem ersten `import keras`
from collections import Counter
from pathlib import Path

import keras
import numpy as np

import tinylm
from tinylm import TinyLMError, course
from tinylm.data import load_corpus

keras.utils.set_random_seed(0)
print("Keras", keras.__version__, "mit Backend", keras.backend.backend())

# %% [markdown]
# ## Die Daten: AG News
#
# tinylm liest die Titel aus den CSV-Dateien von AG News (prüft MD5 und Zeilenzahl beim Herunterladen), einen
# Titel je Zeile. Der Trainings-Split hat 120 000 Titel; offline ist oft nur der Test-Split mit 7 600 Titeln da.

# %%
try:
    source = "agnews:train"
    titles = load_corpus(source).train.splitlines()
except TinyLMError:
    source = "agnews:test"
    titles = load_corpus(source).train.splitlines()
    print("Der Trainings-Split ist nicht da (offline): wir nehmen die Titel des Test-Splits.")
if QUICK:
    titles = titles[:200]
print(f"{len(titles):,} Titel aus {source}, zum Beispiel:")
for title in titles[:3]:
    print("  ", title)

# %% [markdown]
# ## Ein Vokabular aus Zeichen
#
# Keras 2 hatte dafür `Tokenizer(char_level=True)`; Keras 3 hat ihn nicht mehr, also zählen wir selbst. Wie der
# Keras-Tokenizer nummerieren wir nach Häufigkeit: Das häufigste Zeichen bekommt die 1, die 0 bleibt frei für das
# Auffüllen (*Padding*). Zum Schluss hängen wir `<eos>` als eigenes Token an.
#
# **Deine Aufgabe:** Lege `word_index` an (Zeichen → Index, dazu `'<eos>'`), dann `eos_token` und `vocab_size`.

# %%
# >>> LÖSUNG (Aufgabe: word_index = None)
counts = Counter("".join(titles))
word_index = {c: i + 1 for i, c in enumerate(sorted(counts, key=lambda c: -counts[c]))}
word_index["<eos>"] = len(word_index) + 1
# <<< LÖSUNG

# %%
course.check("char_index", word_index, titles=titles)
word_index = word_index or course.news_titles.char_index(titles)
eos_token = word_index["<eos>"]
vocab_size = eos_token + 1
reverse_map = {i: c for c, i in word_index.items()}
print("vocab_size =", vocab_size)


def encode(text):
    return [word_index[c] for c in text if c in word_index]


def decode(indices):
    return "".join(reverse_map[i] for i in indices)


print(encode("Hello, world!"))

# %% [markdown]
# ## Batches: auffüllen, One-Hot, um eins verschieben
#
# Ein Batch enthält mehrere Titel verschiedener Länge. `keras.utils.pad_sequences` füllt sie vorne mit 0 auf die
# Länge des längsten auf. Da das Vokabular klein ist, brauchen wir keine Embedding-Schicht: Jedes Zeichen wird ein
# **One-Hot**-Vektor. Die Ziele sind die Eingaben um eine Stelle verschoben, am Ende steht `<eos>`.
#
# Eine Feinheit: Die `Masking`-Schicht überspringt nur Zeitschritte, deren Vektor **ganz aus Nullen** besteht.
# Der One-Hot-Vektor des Index 0 ist aber `[1, 0, 0, …]`. Setze die Füllpositionen deshalb auf Nullvektoren.
#
# **Deine Aufgabe:** Schreibe `title_batch(titles)`, die `(x, y)` als NumPy-Arrays der Form
# `(Titel, Länge, vocab_size)` zurückgibt.

# %%
def title_batch(batch_titles):
    # >>> LÖSUNG
    z = keras.utils.pad_sequences([encode(t) for t in batch_titles])
    targets = np.concatenate([z[:, 1:], np.full((len(z), 1), eos_token)], axis=1)
    targets[z == 0] = 0
    eye = np.eye(vocab_size, dtype="float32")
    eye[0] = 0  # Füllpositionen: Nullvektoren, die Masking überspringt
    return eye[z], eye[targets]
    # <<< LÖSUNG


# %%
title_batch = course.check("title_batch", title_batch, titles=titles, index=word_index)


class TitleBatches(keras.utils.PyDataset):
    """Die Titel in Batches zu je 8, jede Epoche in neuer Reihenfolge."""

    def __init__(self, titles, batch_size=8):
        super().__init__()
        self.titles, self.batch_size = list(titles), batch_size

    def __len__(self):
        return len(self.titles) // self.batch_size

    def __getitem__(self, i):
        return title_batch(self.titles[i * self.batch_size:(i + 1) * self.batch_size])

    def on_epoch_end(self):
        np.random.shuffle(self.titles)


# %% [markdown]
# ## Das Modell
#
# `Masking` lässt die aufgefüllten Stellen aus. `LSTM(128, return_sequences=True)` gibt an **jeder** Position eine
# Ausgabe, nicht nur an der letzten. `Dense(vocab_size, activation='softmax')` macht daraus eine
# Wahrscheinlichkeitsverteilung über die Zeichen.
#
# **Deine Aufgabe:** Baue `model` und kompiliere es mit `loss='categorical_crossentropy'`.

# %%
# >>> LÖSUNG (Aufgabe: model = None)
model = keras.Sequential([
    keras.Input(shape=(None, vocab_size)),
    keras.layers.Masking(),
    keras.layers.LSTM(128, return_sequences=True),
    keras.layers.Dense(vocab_size, activation="softmax"),
])
model.compile(loss="categorical_crossentropy")
# <<< LÖSUNG

# %%
course.check("keras_model", model, vocab_size=vocab_size)
if model is not None:
    model.summary()

# %% [markdown]
# ## Gierig generieren
#
# Wir beginnen mit einem Anfang wie `'Today '`, geben die kodierten Zeichen (One-Hot) ins Modell und nehmen an der
# letzten Position das wahrscheinlichste Zeichen (`argmax`). Es wird angehängt, und alles beginnt von vorn – bis
# `<eos>` kommt oder `size` Zeichen erzeugt sind.
#
# **Deine Aufgabe:** Schreibe `generate(model, size=100, start='Today ')`.

# %%
def generate(model, size=100, start="Today "):
    # >>> LÖSUNG
    chars = encode(start)
    eye = np.eye(vocab_size, dtype="float32")
    for _ in range(size):
        out = keras.ops.convert_to_numpy(model(eye[None, chars]))[0, -1]
        next_char = int(np.argmax(out))
        if next_char == eos_token:
            break
        chars.append(next_char)
    return decode(chars)
    # <<< LÖSUNG


# %%
course.check("generate", generate, index=word_index)

# %% [markdown]
# ## Trainieren, mit einer Probe nach jeder Epoche
#
# Für einen Generator gibt es keine Genauigkeit. Ob er besser wird, sehen wir an Proben: Ein `LambdaCallback` ruft
# nach jeder Epoche `generate` auf. Wie in der Vorlage: Batches zu 8 Titeln, 3 Epochen.

# %%
if model is not None:
    sampling_callback = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: print(generate(model)))
    history = model.fit(TitleBatches(titles, batch_size=8), epochs=3, callbacks=[sampling_callback],
                        verbose=2)

# %% [markdown]
# ## Weiches Generieren und Temperatur
#
# Immer das wahrscheinlichste Zeichen zu nehmen führt oft in Schleifen. Besser: das nächste Zeichen aus der
# Verteilung **ziehen**. Die **Temperatur** $T$ formt die Verteilung um: $p_i \propto \exp(\log p_i / T)$ – unter 1
# schärfer, über 1 flacher.
#
# Achtung, eine Falle: Das Modell kann auch dem Index 0 (dem Padding) etwas Wahrscheinlichkeit geben. Zieht man
# ihn, gibt es kein Zeichen dazu (`KeyError: 0`). Setze seine Wahrscheinlichkeit vor dem Ziehen auf 0.
#
# **Deine Aufgabe:** Schreibe `generate_soft(model, size=100, start='Today ', temperature=1.0)`.

# %%
def generate_soft(model, size=100, start="Today ", temperature=1.0):
    # >>> LÖSUNG
    chars = encode(start)
    eye = np.eye(vocab_size, dtype="float32")
    for _ in range(size):
        out = keras.ops.convert_to_numpy(model(eye[None, chars]))[0, -1].astype(np.float64)
        probs = np.exp(np.log(np.maximum(out, 1e-12)) / temperature)
        probs[0] = 0.0  # das Padding ist kein Zeichen
        probs = probs / probs.sum()
        next_char = int(np.argmax(np.random.multinomial(1, probs)))
        if next_char == eos_token:
            break
        chars.append(next_char)
    return decode(chars)
    # <<< LÖSUNG


# %%
course.check("generate_soft", generate_soft, index=word_index)

# %%
words = ["Today ", "On Sunday ", "Moscow, ", "President ", "Little red riding hood "]
keras_samples = {}
if model is not None:
    for temperature in [0.3, 0.8, 1.0, 1.3, 1.8]:
        print(f"\n--- Temperatur = {temperature}")
        for start in words:
            keras_samples[temperature, start] = generate_soft(model, size=30 if QUICK else 300, start=start,
                                                               temperature=temperature)
            print(keras_samples[temperature, start])

# %% [markdown]
# **Was fällt dir bei 0.3 und bei 1.8 auf?**

# %% [markdown] tags=["answer"]
# Bei 0.3 ist der Text fast gierig: gut lesbar, aber dieselben häufigen Wörter und Wendungen (etwa „#39;s“, das
# Apostroph in der HTML-Schreibweise der Daten) kehren immer wieder. Bei 1.8 werden auch unwahrscheinliche Zeichen
# gezogen: Es entstehen Buchstabenfolgen, die keine Wörter mehr sind, und die Titel enden oft nicht mit `<eos>`,
# sondern erst bei der Längengrenze. Dazwischen, um 0.8 bis 1.0, sind die Titel abwechslungsreich und trotzdem
# meist lesbar.

# %% [markdown]
# ## Zum Ausprobieren
#
# Offene Aufgaben – ohne Prüfzelle, zum Weiterforschen:
#
# * **Mehr Text:** Trainiere mit Titel und Beschreibung. Lange Folgen fallen einem RNN schwer: Schneide den Text in
#   Stücke fester Länge (etwa 256 Zeichen).
# * **Mehrere LSTM-Schichten:** Zwei oder drei gestapelte `LSTM`-Schichten (die unteren brauchen
#   `return_sequences=True`). Untere Schichten lernen eher Silben, obere eher Wörter und Wortfolgen.
# * **GRU statt LSTM** und **andere Größen** der versteckten Schicht: Zu groß lernt auswendig (Overfitting), zu klein
#   lernt zu wenig.

# %% [markdown]
# ## Dasselbe mit tinylm: der Zeilenmodus
#
# tinylm kennt diese Form der Daten – ein Beispiel je Zeile, jedes endet mit `<eos>` – als **Zeilenmodus**
# (`--lines`; bei `agnews` schaltet er sich selbst ein). Auffüllen und Maskieren erledigt tinylm: Füllpositionen
# zählen im Loss nicht. Statt One-Hot nimmt tinylm eine Embedding-Schicht; sonst dieselben Einstellungen: LSTM(128),
# Batches zu 8, 3 Epochen, dieselben Titel.

# %%
lines_file = Path(OUT) / "titel.txt"
Path(OUT).mkdir(parents=True, exist_ok=True)
lines_file.write_text("\n".join(titles) + "\n", encoding="utf-8")
config = tinylm.RunConfig(
    data=tinylm.DataConfig(source=str(lines_file), lines=True, block_size=128),
    model=tinylm.model_config("lstm", embed=32, hidden=128, layers=1, dropout=0.0),
    train=tinylm.TrainConfig(epochs=3, batch_size=8, lr=3e-3, sample_prompt="Today ", sample_tokens=80),
)
run = tinylm.train(config, out=Path(OUT) / "zeilenmodus", overwrite=True)

# %%
for temperature in [0.3, 0.8, 1.0, 1.3, 1.8]:
    print(f"\n--- Temperatur = {temperature}")
    # ein Seed je Anfang: mit demselben Seed zöge jeder Anfang dieselben Zufallszahlen
    for seed, start in enumerate(words):
        print(run.generate(start, max_new_tokens=60 if QUICK else 300, temperature=temperature, seed=seed))
