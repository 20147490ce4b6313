# %% [markdown]
# # 03 · RNN-Muster, Prompts und Temperatur – und das Wort-Labor
#
# Ein RNN verarbeitet Folgen Schritt für Schritt und trägt dabei einen Zustand mit. Je nachdem, wo Eingaben
# hineingehen und Ausgaben herauskommen, entstehen vier **Muster**. Du baust alle vier an kleinen Tensoren, damit
# du die Formen siehst. Danach geht es um **weiches Generieren** mit Temperatur und zum Schluss um Text auf
# **Wortebene**, auf einem Buch deiner Wahl.

# %% tags=["setup"]

# %%
from pathlib import Path

import torch

import tinylm
from tinylm import course
from tinylm.course.patterns import small_models
from tinylm.data import load_corpus

torch.manual_seed(0)

# %% [markdown]
# ## 1. Die vier Muster
#
# | Muster | Eingabe → Ausgabe | Beispiel |
# | --- | --- | --- |
# | one-to-one | ein Vektor → ein Vektor | ein gewöhnliches Netz, gar keine Folge |
# | one-to-many | ein Vektor → eine Folge | Bildbeschreibung: ein Bildvektor, daraus Wort für Wort ein Satz |
# | many-to-one | eine Folge → ein Vektor | Textklassifikation: den ganzen Text lesen, eine Klasse ausgeben |
# | many-to-many | eine Folge → eine Folge | an jeder Stelle eine Ausgabe (unser Zeichenmodell); als *sequence-to-sequence* auch Übersetzung |
#
# Gegeben sind eine Schicht `linear = nn.Linear(4, 3)` und ein `lstm = nn.LSTM(4, 3, batch_first=True)`, dazu ein
# Batch `x` aus 2 Folgen à 5 Schritten mit je 4 Merkmalen.
#
# **Deine Aufgabe:** Schreibe die vier Funktionen. Bei *one-to-many* geht nur der erste Schritt von `x` hinein,
# danach Nullvektoren, insgesamt `steps` Schritte.

# %%
linear, lstm = small_models()
x = torch.randn(2, 5, 4)


def one_to_one(linear, lstm, x):
    # >>> LÖSUNG
    return linear(x[:, 0])
    # <<< LÖSUNG


def one_to_many(linear, lstm, x, steps):
    # >>> LÖSUNG
    inputs = torch.cat([x[:, :1], torch.zeros(x.size(0), steps - 1, x.size(2))], dim=1)
    outputs, _ = lstm(inputs)
    return outputs
    # <<< LÖSUNG


def many_to_one(linear, lstm, x):
    # >>> LÖSUNG
    outputs, _ = lstm(x)
    return outputs[:, -1]
    # <<< LÖSUNG


def many_to_many(linear, lstm, x):
    # >>> LÖSUNG
    outputs, _ = lstm(x)
    return outputs
    # <<< LÖSUNG


# %%
course.check("rnn_patterns", {"one_to_one": one_to_one, "one_to_many": one_to_many, "many_to_one": many_to_one,
                              "many_to_many": many_to_many})

# %% [markdown]
# **Quiz.** Welches Muster passt zu (1) maschineller Übersetzung, (2) einer Stimmungsanalyse von Filmkritiken,
# (3) einem Modell, das aus einem Bild eine Beschreibung schreibt? Und welches verwendet ein Zeichenmodell beim
# Training?

# %% [markdown] tags=["answer"]
# (1) many-to-many als *sequence-to-sequence*: Ein Encoder liest den ganzen Satz in seinen Zustand, ein Decoder
# entfaltet daraus den übersetzten Satz. (2) many-to-one: Die ganze Kritik wird gelesen, am Ende steht eine Klasse.
# (3) one-to-many: Ein Bildvektor (etwa aus einem CNN) ist der Anfangszustand, daraus entsteht Wort für Wort der
# Satz. Ein Zeichenmodell trainiert many-to-many: An jeder Position sagt es das nächste Zeichen voraus. Beim
# Generieren läuft es dann wie one-to-many weiter, Zeichen für Zeichen.

# %% [markdown]
# ## 2. Prompt, Zustand und weiches Generieren
#
# Beim Generieren geht zuerst der **Prompt** durch das RNN und baut den Zustand auf. Dann entsteht ein Zeichen
# nach dem anderen: Jedes neue Zeichen und der Zustand gehen in den nächsten Schritt.
#
# Nimmt man immer das wahrscheinlichste Zeichen, wird der Text leicht zyklisch. Liegen die zwei besten Zeichen nah
# beieinander (0.20 und 0.19), ist es fairer, aus der Verteilung zu **ziehen**. Die **Temperatur** $T$ teilt die
# Logits vor der Softmax: $T < 1$ macht die Verteilung steiler, $T > 1$ flacher.
#
# **Deine Aufgabe:** Schreibe `sample_next(logits, temperature, generator)`, die einen Index zieht.

# %%
def sample_next(logits, temperature, generator):
    # >>> LÖSUNG
    probs = torch.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))
    # <<< LÖSUNG


# %%
course.check("sample_next", sample_next)

# %%
import matplotlib.pyplot as plt

logits = torch.tensor([2.0, 1.9, 0.5, -1.0, -2.0])
fig, ax = plt.subplots(figsize=(6, 3))
for T in (0.3, 1.0, 3.0):
    ax.bar([i + (T - 1) * 0.12 for i in range(5)], tinylm.tempered_softmax(logits, T), width=0.25, label=f"T = {T}")
ax.set_xlabel("Token")
ax.set_ylabel("Wahrscheinlichkeit")
ax.legend()
plt.show()

# %% [markdown]
# **Quiz.** Was passiert, wenn $T \to 0$ geht, und was bei $T \to \infty$?

# %% [markdown] tags=["answer"]
# Für $T \to 0$ bekommt das Token mit dem größten Logit die ganze Wahrscheinlichkeit: Ziehen wird zu `argmax`, also
# gierigem Generieren. Für $T \to \infty$ werden alle Wahrscheinlichkeiten gleich: Jedes Token ist gleich
# wahrscheinlich, der Text wird zufällig.

# %% [markdown]
# ## 3. Das Wort-Labor: Text auf Wortebene
#
# Statt Zeichen nehmen wir jetzt **Wörter** als Tokens. Das Vokabular wird viel größer, dafür ist jedes erzeugte
# Token ein echtes Wort. Wähle ein Buch aus dem Projekt Gutenberg (die Nummer steht in seiner Adresse,
# z. B. 2229 für Faust I). Ohne Netz nimmt das Notebook Goethes Faust, den tinylm mitbringt.
#
# Wir vergleichen zwei Modelle auf demselben Text: eine **Markov-Kette** (zählt, welches Wort auf die letzten zwei
# folgt) und ein **LSTM**.

# %%
BUCH = "gutenberg:2229"  # deine Wahl: gutenberg:NUMMER
try:
    book = load_corpus(BUCH).train
except tinylm.TinyLMError as e:
    print(f"{BUCH} ist nicht erreichbar ({e}); wir nehmen Goethes Faust.")
    BUCH, book = "faust", load_corpus("faust").train
if QUICK:
    book = book[:60_000]
book_file = Path(OUT) / "buch.txt"
book_file.parent.mkdir(parents=True, exist_ok=True)
book_file.write_text(book, encoding="utf-8")

words = tinylm.TokenizerConfig(kind="word", min_freq=2)
markov = tinylm.train(tinylm.RunConfig(data=tinylm.DataConfig(source=str(book_file), block_size=32), tokenizer=words,
                                       model=tinylm.model_config("markov", order=3)),
                      out=Path(OUT) / "markov", overwrite=True)
lstm_run = tinylm.train(tinylm.RunConfig(
    data=tinylm.DataConfig(source=str(book_file), block_size=32), tokenizer=words,
    model=tinylm.model_config("lstm", embed=64, hidden=128 if QUICK else 256, layers=1 if QUICK else 2),
    train=tinylm.TrainConfig(epochs=2 if QUICK else 10, batch_size=32, lr=3e-3)), out=Path(OUT) / "lstm",
    overwrite=True)

# %%
prompt = "Ich"
for name, run in (("Markov", markov), ("LSTM", lstm_run)):
    result = run.evaluate()
    print(f"--- {name}: Validierungs-Loss {result.loss:.3f} (Perplexität {result.perplexity:.0f})")
    print(run.generate(prompt, max_new_tokens=40, temperature=0.8, seed=1), "\n")

# %% [markdown]
# **Frage:** Welches Modell schreibt grammatischer, welches hält den Faden länger? Was sagt die Perplexität?

# %% [markdown] tags=["answer"]
# Die Markov-Kette kennt nur die letzten zwei Wörter: Kurze Stücke klingen oft richtig, weil sie wörtlich aus dem
# Buch stammen, aber nach wenigen Wörtern springt der Text. Das LSTM trägt einen Zustand über viele Wörter und
# erzeugt auch Wortfolgen, die es so nie gesehen hat; nach kurzem Training macht es dafür mehr grammatische
# Fehler. Die Perplexität misst, wie überrascht ein Modell vom Validierungstext ist (kleiner ist besser); bei
# Wörtern als Tokens liegt sie viel höher als bei Zeichen, weil es viel mehr mögliche Tokens gibt. GPT-2, ein großes
# vortrainiertes Transformer-Modell, übertrifft beide – das zeigt das Abschlussprojekt (Bonus).
