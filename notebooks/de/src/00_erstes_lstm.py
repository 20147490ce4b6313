# %% [markdown]
# # 00 · Von Zeichen zum ersten LSTM
#
# Ein Sprachmodell sagt das nächste Zeichen voraus. Hier baust du das kleinste mögliche Beispiel selbst: ein
# Vokabular aus den Zeichen von `"hallo pytorch"`, ein LSTM mit einem Embedding der Breite 10 und 20 versteckten
# Einheiten, einen Trainingsloop mit Adam (Lernrate 0.01) über 100 Epochen und zum Schluss 20 neue Zeichen ab `h`.
#
# Jeder Schritt endet mit einer **Prüfzelle** (`course.check(...)`): Sie sagt dir, was schon stimmt und was nicht,
# und gibt einen Tipp. Die Fachbegriffe stehen im [Glossar](../../docs/de/glossar.md).

# %% tags=["setup"]

# %%
import torch
import torch.nn as nn
import torch.optim as optim

from tinylm import course

torch.manual_seed(0)  # damit alle dasselbe Ergebnis sehen

# %% [markdown]
# ## 1. Der Text
#
# Unser ganzer "Korpus" ist ein einziger kurzer Satz. Das reicht, um jeden Teil eines Sprachmodells zu sehen.

# %%
text = "hallo pytorch"
print(repr(text), "hat", len(text), "Zeichen")

# %% [markdown]
# ## 2. Tokenisierung: Zeichen werden zu Zahlen
#
# Ein neuronales Netz rechnet mit Zahlen. Wir geben jedem **verschiedenen** Zeichen eine Nummer (seinen *Index*).
# Die Menge dieser Zeichen ist das **Vokabular**.
#
# **Deine Aufgabe:** Lege `chars` (die sortierten verschiedenen Zeichen), `vocab_size`, `char2idx` (Zeichen → Index)
# und `idx2char` (Index → Zeichen) an.

# %%
# >>> LÖSUNG (Aufgabe: chars = char2idx = idx2char = None)
chars = sorted(set(text))
char2idx = {ch: i for i, ch in enumerate(chars)}
idx2char = {i: ch for ch, i in char2idx.items()}
# <<< LÖSUNG
vocab_size = len(chars) if chars else 0

# %%
course.check("vocabulary", (chars, char2idx, idx2char), text=text)

# %% [markdown]
# Nun wird der Satz zu einer Folge von Indizes. Das Modell soll an jeder Stelle das **nächste** Zeichen
# vorhersagen: Die Eingabe ist der Satz ohne sein letztes Zeichen, das Ziel der Satz ohne sein erstes. Beide
# bekommen vorne eine Batch-Dimension der Größe 1.
#
# **Deine Aufgabe:** Lege `input_seq` und `target_seq` an (je ein Tensor der Form `(1, 12)`).

# %%
# >>> LÖSUNG (Aufgabe: input_seq = target_seq = None)
text_indices = [char2idx[ch] for ch in text]
input_seq = torch.tensor(text_indices[:-1]).unsqueeze(0)
target_seq = torch.tensor(text_indices[1:]).unsqueeze(0)
# <<< LÖSUNG

# %%
course.check("sequences", (input_seq, target_seq), text=text, char2idx=char2idx or {})

# %% [markdown]
# ## 3. Das Modell
#
# Drei Schichten hintereinander:
#
# 1. `nn.Embedding(vocab_size, embedding_dim)` macht aus jedem Index einen Vektor der Länge `embedding_dim`;
# 2. `nn.LSTM(embedding_dim, hidden_dim, batch_first=True)` liest die Vektoren der Reihe nach und trägt dabei einen
#    **Hidden State** mit;
# 3. `nn.Linear(hidden_dim, vocab_size)` macht aus jeder Ausgabe des LSTM einen Wert je Zeichen: die **Logits**.
#
# `forward(x, hidden=None)` gibt `(logits, hidden)` zurück, damit wir beim Generieren den Zustand weiterreichen
# können.
#
# **Deine Aufgabe:** Schreibe die Klasse fertig.

# %%
class SimpleLSTMLanguageModel(nn.Module):
    def __init__(self, vocab_size, embedding_dim, hidden_dim):
        super().__init__()
        # >>> LÖSUNG
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, vocab_size)
        # <<< LÖSUNG

    def forward(self, x, hidden=None):
        # >>> LÖSUNG
        x = self.embedding(x)
        output, hidden = self.lstm(x, hidden)
        return self.fc(output), hidden
        # <<< LÖSUNG


embedding_dim, hidden_dim = 10, 20

# %%
SimpleLSTMLanguageModel = course.check("lstm_model", SimpleLSTMLanguageModel, vocab_size=vocab_size or 10)

# %% [markdown]
# ## 4. Der Trainingsloop
#
# Jede Epoche sieht das Modell den ganzen Satz auf einmal (*full batch*):
#
# 1. `optimizer.zero_grad()` löscht die Gradienten der letzten Epoche,
# 2. der **Forward-Pass** berechnet die Logits,
# 3. `nn.CrossEntropyLoss` vergleicht sie mit den Zielen – dafür werden Batch und Länge zu einer Achse
#    zusammengelegt: `logits.view(-1, vocab_size)` und `target_seq.view(-1)`,
# 4. der **Rückwärtsdurchlauf** (`loss.backward()`) berechnet die Gradienten,
# 5. `optimizer.step()` verändert die Gewichte.
#
# **Deine Aufgabe:** Trainiere 100 Epochen mit Adam und Lernrate 0.01, gib alle 20 Epochen den Loss aus und sammle
# jeden Loss in der Liste `losses`.

# %%
model = SimpleLSTMLanguageModel(vocab_size or 10, embedding_dim, hidden_dim)
criterion = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)
num_epochs = 100
losses = []

# >>> LÖSUNG (Aufgabe: pass)
for epoch in range(num_epochs):
    model.train()
    optimizer.zero_grad()
    logits, _ = model(input_seq)
    loss = criterion(logits.view(-1, vocab_size), target_seq.view(-1))
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
    if (epoch + 1) % 20 == 0:
        print(f"Epoche {epoch + 1}/{num_epochs}, Loss: {loss.item():.4f}")
# <<< LÖSUNG

# %%
course.check("training", losses)

# %% [markdown]
# Wie der Loss gefallen ist, zeigt eine Kurve schneller als eine Liste:

# %%
import matplotlib.pyplot as plt

if losses:
    plt.figure(figsize=(6, 3))
    plt.plot(range(1, len(losses) + 1), losses)
    plt.xlabel("Epoche")
    plt.ylabel("CrossEntropyLoss")
    plt.title("Training auf \"hallo pytorch\"")
    plt.show()

# %% [markdown]
# ## 5. Text generieren
#
# Zum Generieren geben wir dem Modell immer nur das **letzte** Zeichen und den Hidden State aus dem vorigen
# Schritt. Aus den Logits wird mit `torch.softmax` eine Wahrscheinlichkeitsverteilung, aus der
# `torch.multinomial` das nächste Zeichen zieht.
#
# **Deine Aufgabe:** Schreibe `generate(model, start_char, length)`, die `start_char` und `length` neue Zeichen
# zurückgibt.

# %%
def generate(model, start_char="h", length=20):
    # >>> LÖSUNG
    model.eval()
    input_idx = torch.tensor([[char2idx[start_char]]])
    hidden = None
    generated = start_char
    with torch.no_grad():
        for _ in range(length):
            logits, hidden = model(input_idx, hidden)
            probs = torch.softmax(logits[:, -1, :], dim=-1)
            next_idx = torch.multinomial(probs, num_samples=1).item()
            generated += idx2char[next_idx]
            input_idx = torch.tensor([[next_idx]])
    return generated
    # <<< LÖSUNG


# %%
course.check("generation", generate, model=model, char2idx=char2idx or {})

# %%
if losses:
    print("Generierter Text:", generate(model, "h", 20))

# %% [markdown]
# ## Zum Nachdenken
#
# Das Modell hat nur einen Satz gesehen. Was erwartest du, wenn du mit einem Zeichen beginnst, das im Satz nicht
# vorkommt, zum Beispiel `"x"`? Und warum wiederholt sich der Text nach `"hallo pytorch"` nicht einfach?

# %% [markdown] tags=["answer"]
# `"x"` steht nicht im Vokabular: `char2idx["x"]` gibt einen `KeyError`, das Modell kann dieses Zeichen gar nicht
# lesen. Ein echtes Sprachmodell braucht deshalb ein Zeichen für Unbekanntes (bei tinylm `<unk>`). Nach dem Satz
# geht es zufällig weiter, weil das Modell das Ende nie gesehen hat: Es hat nur gelernt, welches Zeichen innerhalb
# des Satzes folgt, und `torch.multinomial` zieht, statt immer das wahrscheinlichste Zeichen zu nehmen.
