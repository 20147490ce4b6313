"""Write a corpus of made-up news titles, one per line, from a small template grammar.

    python examples/news_titles.py 3000 > titles.txt       # 3,000 titles (seed 0)
    python examples/news_titles.py 500 --seed 7 > small.txt

Example 3 trains on it in line mode. A generated corpus needs no download and has no copyright; it is
also a fair test: the model must learn the templates' structure (which words go where, how long a title
is, where it ends), not just spelling. Real headline data sets (e.g. "A Million News Headlines" or the news
category data sets on the Hugging Face Hub) work the same way: one title per line.
"""

from __future__ import annotations

import argparse
import random

SUBJECTS = ["Councillors", "Residents", "Scientists", "Local farmers", "Teachers", "Ministers", "Researchers",
            "Villagers", "Engineers", "Students", "Doctors", "Fishermen", "Volunteers"]  # plural: "X approve"
VERBS = ["approve", "reject", "unveil", "delay", "celebrate", "question", "debate", "fund", "launch",
         "review"]
THINGS = ["new bridge", "school budget", "harbour plan", "solar farm", "railway line", "river clean-up",
          "library", "water project", "bus route", "market square", "flood defences", "museum", "park"]
PLACES = ["Northfield", "Kingsport", "Ashby", "Riverton", "Eastwood", "Milltown", "Greenhaven", "Oakridge",
          "Stonebridge", "Westbury", "Lakeside", "Hillcrest"]
EVENTS = ["storm", "heatwave", "festival", "strike", "election", "flood", "marathon", "fair", "power cut"]
ADJECTIVES = ["record", "surprise", "early", "late", "quiet", "busy", "historic", "costly", "small", "big"]
VENUES = ["library", "museum", "park", "market square", "bus route", "railway line", "harbour"]
FINDS = ["rare bird", "old coin", "Roman road", "lost painting", "new species of frog", "ancient well"]
NUMBERS = ["Three", "Five", "Seven", "Ten", "Twelve"]
TEMPLATES = [
    "{subject} {verb} {thing} in {place}",
    "{place} {verb_s} {adjective} {thing}",
    "{adjective_cap} {event} hits {place}",
    "{number} things to know about the {place} {event}",
    "Scientists find {find} near {place}",
    "{place} prepares for {adjective} {event}",
    "Why {place} wants a {thing}",
    "{subject} {verb} plan for {thing}",
    "{event_cap} closes {place} {venue}",
    "{place} and {place2} share cost of {thing}",
]


def title(rng: random.Random) -> str:
    place, place2 = rng.sample(PLACES, 2)
    verb = rng.choice(VERBS)
    adjective = rng.choice(ADJECTIVES)
    event = rng.choice(EVENTS)
    return rng.choice(TEMPLATES).format(
        subject=rng.choice(SUBJECTS), verb=verb, verb_s=verb + "s", thing=rng.choice(THINGS), place=place,
        place2=place2, adjective=adjective, adjective_cap=adjective.capitalize(), event=event,
        event_cap=event.capitalize(), venue=rng.choice(VENUES), find=rng.choice(FINDS),
        number=rng.choice(NUMBERS),
    )


def titles(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [title(rng) for _ in range(count)]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, help="number of titles")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("\n".join(titles(args.count, args.seed)))
