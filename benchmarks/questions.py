"""Deterministic generator of realistic questioner outputs (VLM questions about images) for benchmarks.

Questions are 15-40 whitespace tokens built from templates about objects, colours, counts, positions and
charts; about 30% are near-duplicates (an earlier question with 1-3 words changed), as a questioner produces.
"""

from __future__ import annotations

import random

OBJECTS = (
    "car bus bicycle motorcycle truck boat airplane train person child dog cat horse bird cow sheep elephant "
    "giraffe zebra bear chair table sofa bed lamp clock vase book laptop phone keyboard mouse television bottle "
    "cup bowl plate fork knife spoon banana apple orange sandwich pizza cake donut umbrella backpack handbag "
    "suitcase kite skateboard surfboard frisbee ball racket bench sign hydrant bridge tower building window door "
    "tree flower plant fence mountain river cloud road sidewalk crosswalk pole statue fountain tent balloon"
).split()
COLORS = "red blue green yellow black white orange purple pink brown gray silver golden beige turquoise".split()
MATERIALS = "wooden metal plastic glass stone brick paper leather ceramic fabric".split()
SIZES = "small large tiny huge tall short narrow wide long round".split()
POSITIONS = (
    "on the left side of|on the right side of|in the foreground of|in the background of|at the top of|"
    "at the bottom of|in the center of|near the edge of|behind the main subject of|in the upper left corner of"
).split("|")
SCENES = "image picture photo scene photograph frame".split()
CHARTS = "bar chart|line graph|pie chart|scatter plot|histogram|stacked bar chart|table|area chart".split("|")
SERIES = (
    "revenue|profit|population|temperature|rainfall|sales|market share|exports|enrollment|energy use|"
    "traffic volume|average price|unemployment rate|growth rate"
).split("|")
PERIODS = "2015 2016 2017 2018 2019 2020 2021 2022 2023 January February March April May June Q1 Q2 Q3 Q4".split()
ACTIONS = "holding|riding|sitting on|standing next to|looking at|walking toward|carrying|pointing at".split("|")
PEOPLE = "man woman boy girl person player worker chef student tourist".split()
UNITS = "meters|centimeters|kilograms|degrees|percent|dollars|minutes|liters".split("|")

TEMPLATES = (
    "How many {color} {obj}s can be seen {pos} the {scene}, counting only the ones that are fully visible?",
    "What is the color of the {size} {material} {obj} that appears {pos} the {scene}?",
    "Which object is located directly {pos} the {scene}, just beside the {color} {obj2}?",
    "In the {chart} shown in the {scene}, what is the difference in {series} between {p1} and {p2}?",
    "According to the {chart}, in which period did the {series} reach its highest value, and by how much?",
    "What is the {person} {action} the {color} {obj} {pos} the {scene} most likely about to do next?",
    "Estimate the height of the {size} {obj} {pos} the {scene} in {unit}, using the {obj2} as a reference.",
    "If one {color} {obj} were removed from the {scene}, how many {obj}s and {obj2}s would remain in total?",
    "Based on the {chart}, what is the average {series} across {p1}, {p2} and {p3}, rounded to one decimal?",
    "Is the {material} {obj} {pos} the {scene} larger or smaller than the {color} {obj2} next to it?",
    "What fraction of the {obj}s in the {scene} are {color}, given that some are partially hidden by the {obj2}?",
    "Which {chart} category has the lowest {series}, and what is its approximate value in {unit}?",
)
PREFIXES = (
    "Look carefully at the {scene}.",
    "Consider the {scene} provided above.",
    "Examine the details of the {scene}.",
    "Using only the visual information available,",
    "The {scene} shows a {size} {obj2} and several other objects.",
    "",
    "",
)
CHOICES = (
    " Choose one: (A) {a} (B) {b} (C) {c} (D) {d}.",
    " Options: A. {a} B. {b} C. {c} D. {d}",
    " Answer with a single number.",
    " Give your answer as an integer.",
    " Explain briefly, then give the final answer.",
    "",
)


def _fill(rng: random.Random, text: str) -> str:
    obj, obj2 = rng.sample(OBJECTS, 2)
    p1, p2, p3 = rng.sample(PERIODS, 3)
    values = {
        "color": rng.choice(COLORS),
        "obj": obj,
        "obj2": obj2,
        "size": rng.choice(SIZES),
        "material": rng.choice(MATERIALS),
        "pos": rng.choice(POSITIONS),
        "scene": rng.choice(SCENES),
        "chart": rng.choice(CHARTS),
        "series": rng.choice(SERIES),
        "p1": p1,
        "p2": p2,
        "p3": p3,
        "person": rng.choice(PEOPLE),
        "action": rng.choice(ACTIONS),
        "unit": rng.choice(UNITS),
    }
    choice_pool = COLORS + OBJECTS + [str(n) for n in range(0, 40)]
    values.update(zip("abcd", rng.sample(choice_pool, 4), strict=True))
    return text.format(**values)


def _fresh(rng: random.Random) -> str:
    while True:
        text = f"{rng.choice(PREFIXES)} {rng.choice(TEMPLATES)}{rng.choice(CHOICES)}"
        words = _fill(rng, text).split()
        if 15 <= len(words) <= 40:
            return " ".join(words)


def _mutate(rng: random.Random, question: str) -> str:
    words = question.split()
    pool = OBJECTS + COLORS + SIZES + MATERIALS + PEOPLE
    for pos in rng.sample(range(len(words)), rng.randint(1, 3)):
        words[pos] = rng.choice(pool)
    return " ".join(words)


def generate_questions(n: int, seed: int = 0, near_duplicate_rate: float = 0.3) -> list[str]:
    """`n` questions of 15-40 words; a `near_duplicate_rate` share copy an earlier one with 1-3 words changed."""
    rng = random.Random(seed)
    questions: list[str] = []
    for _ in range(n):
        if questions and rng.random() < near_duplicate_rate:
            questions.append(_mutate(rng, rng.choice(questions)))
        else:
            questions.append(_fresh(rng))
    return questions


if __name__ == "__main__":
    for q in generate_questions(12, seed=1):
        print(len(q.split()), q)
