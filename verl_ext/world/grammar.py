"""The question grammar of the world: 18 templates, a sampler that instantiates them on a scene, and the oracle.

The oracle parses a question back into (template, slots) and answers it from the scene, or says why it cannot:
`no_template` (outside the grammar), `wrong_kind` (a chart question about shapes, or the reverse), `bad_reference`
(the object named is absent or not unique), `bad_options` (malformed options, or the answer is not among them),
`ambiguous` (a tie: no single answer). It is used for measurement only: never in a reward or a training label.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .scenes import COLORS, SHAPES, SIZES

LETTERS = "ABCD"
STATUSES = ("ok", "no_template", "wrong_kind", "bad_reference", "bad_options", "ambiguous")
_SLOT = re.compile(r"\{(\w+)\}")
_COLOR_RE = "|".join(sorted(COLORS))
_SLOT_RE = {
    "color": f"(?P<color>{_COLOR_RE})",
    "color2": f"(?P<color2>{_COLOR_RE})",
    "shape": f"(?P<shape>{'|'.join(SHAPES)})",
    "shape2": f"(?P<shape2>{'|'.join(SHAPES)})",
    "size": f"(?P<size>{'|'.join(SIZES)})",
    "k": "(?P<k>[1-9])",
    "a": "(?P<a>an?)",
    "options": r"a\. ?(?P<o0>[a-z]+),? b\. ?(?P<o1>[a-z]+),? c\. ?(?P<o2>[a-z]+),? d\. ?(?P<o3>[a-z]+)\.?",
}


class Unanswerable(Exception):
    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class Template:
    id: str
    kind: str  # scene kind it is about: shapes | chart
    qtype: str  # the VisPlay question type the questioner writes
    family: str  # count | colour | yes/no | relation | comparison | arithmetic | chart | multiple choice
    text: str  # with {slot}s; {shape}s is the plural
    answer: Callable[[dict, dict], str]  # (scene, slots) -> answer, or raise Unanswerable
    sample: Callable[[dict, random.Random], dict | None]  # slots that make the question answerable, or None
    reason: Callable[[dict, dict, str], str]  # a one-sentence worked answer (warm-up targets only)

    @property
    def pattern(self) -> re.Pattern:
        return _compile(self.text)


def _compile(text: str) -> re.Pattern:
    parts, pos = [], 0
    for m in _SLOT.finditer(text.lower()):
        parts.append(re.escape(text.lower()[pos : m.start()]).replace(r"\ ", " "))
        parts.append(_SLOT_RE[m.group(1)])
        pos = m.end()
    tail = text.lower()[pos:]
    parts.append(re.escape(tail.rstrip("?")).replace(r"\ ", " ") + (r"\??" if tail.endswith("?") else ""))
    return re.compile("".join(parts))


def normalize(question: str) -> str:
    return " ".join(str(question).strip().lower().split()).rstrip(".").strip()


# ---------------------------------------------------------------------------------------------------------------
# Scene helpers
# ---------------------------------------------------------------------------------------------------------------


def _objects(scene: dict, **attrs) -> list[dict]:
    return [o for o in scene["objects"] if all(o[k] == v for k, v in attrs.items())]


def _the(scene: dict, **attrs) -> dict:
    found = _objects(scene, **attrs)
    if len(found) != 1:
        raise Unanswerable("bad_reference")
    return found[0]


def _bar(scene: dict, color: str) -> dict:
    found = [b for b in scene["bars"] if b["color"] == color]
    if len(found) != 1:
        raise Unanswerable("bad_reference")
    return found[0]


def _options(slots: dict) -> list[str]:
    opts = [slots[f"o{i}"] for i in range(4)]
    if len(set(opts)) != 4 or any(o not in COLORS for o in opts):
        raise Unanswerable("bad_options")
    return opts


def _letter(slots: dict, correct: str) -> str:
    opts = _options(slots)
    if correct not in opts:
        raise Unanswerable("bad_options")
    return LETTERS[opts.index(correct)]


def _unique_max(counts: dict[str, int]) -> str:
    top = max(counts.values())
    best = [k for k, v in counts.items() if v == top]
    if len(best) != 1:
        raise Unanswerable("ambiguous")
    return best[0]


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _pick_options(rng: random.Random, correct: str, pool: list[str]) -> dict:
    others = rng.sample([c for c in pool if c != correct], 3)
    opts = others + [correct]
    rng.shuffle(opts)
    return {f"o{i}": o for i, o in enumerate(opts)}


def _unique_objects(scene: dict) -> list[dict]:
    """Objects that `the {color} {shape}` names unambiguously."""
    c = Counter((o["color"], o["shape"]) for o in scene["objects"])
    return [o for o in scene["objects"] if c[(o["color"], o["shape"])] == 1]


def _size_of(scene: dict, color: str, shape: str) -> str:
    return _the(scene, color=color, shape=shape)["size"]


def _article(color: str) -> str:
    return "an" if color[0] in "aeiou" else "a"


# ---------------------------------------------------------------------------------------------------------------
# Templates: answer, sampler, worked answer
# ---------------------------------------------------------------------------------------------------------------


def _t_count_all(scene, s):
    return str(len(scene["objects"]))


def _t_count_color(scene, s):
    return str(len(_objects(scene, color=s["color"])))


def _t_count_shape(scene, s):
    return str(len(_objects(scene, shape=s["shape"])))


def _t_count_color_shape(scene, s):
    return str(len(_objects(scene, color=s["color"], shape=s["shape"])))


def _t_count_size(scene, s):
    return str(len(_objects(scene, size=s["size"])))


def _t_add(scene, s):
    return str(len(scene["objects"]) + int(s["k"]))


def _t_exists(scene, s):
    return _yes(bool(_objects(scene, color=s["color"], shape=s["shape"])))


def _t_color_of(scene, s):
    return _letter(s, _the(scene, shape=s["shape"])["color"])


def _pair(scene, s) -> tuple[dict, dict]:
    a = _the(scene, color=s["color"], shape=s["shape"])
    b = _the(scene, color=s["color2"], shape=s["shape2"])
    if a is b:
        raise Unanswerable("bad_reference")
    return a, b


def _t_left(scene, s):
    a, b = _pair(scene, s)
    return _yes(a["col"] < b["col"])


def _t_larger(scene, s):
    a, b = _pair(scene, s)
    return _yes(a["size"] == "large" and b["size"] == "small")


def _t_more(scene, s):
    if s["color"] == s["color2"]:
        raise Unanswerable("bad_reference")
    return _yes(len(_objects(scene, color=s["color"])) > len(_objects(scene, color=s["color2"])))


def _t_most_color(scene, s):
    return _letter(s, _unique_max(Counter(o["color"] for o in scene["objects"])))


def _t_bar_count(scene, s):
    return str(len(scene["bars"]))


def _t_bar_value(scene, s):
    return str(_bar(scene, s["color"])["value"])


def _bar_pair(scene, s) -> tuple[dict, dict]:
    if s["color"] == s["color2"]:
        raise Unanswerable("bad_reference")
    return _bar(scene, s["color"]), _bar(scene, s["color2"])


def _t_bar_sum(scene, s):
    a, b = _bar_pair(scene, s)
    return str(a["value"] + b["value"])


def _t_bar_range(scene, s):
    values = [b["value"] for b in scene["bars"]]
    return str(max(values) - min(values))


def _t_bar_taller(scene, s):
    a, b = _bar_pair(scene, s)
    return _yes(a["value"] > b["value"])


def _t_bar_tallest(scene, s):
    return _letter(s, _unique_max({b["color"]: b["value"] for b in scene["bars"]}))


# Samplers: slots for which the answer exists. Absent colours / shapes are asked about too (answer 0 or "no").
def _s_none(scene, rng):
    return {}


def _s_color(scene, rng):
    present = [o["color"] for o in scene["objects"]]
    return {"color": rng.choice(present) if rng.random() < 0.75 else rng.choice(sorted(COLORS))}


def _s_shape(scene, rng):
    present = [o["shape"] for o in scene["objects"]]
    return {"shape": rng.choice(present) if rng.random() < 0.75 else rng.choice(SHAPES)}


def _s_color_shape(scene, rng):
    if rng.random() < 0.6:
        o = rng.choice(scene["objects"])
        return {"color": o["color"], "shape": o["shape"], "a": _article(o["color"])}
    color = rng.choice(sorted(COLORS))
    return {"color": color, "shape": rng.choice(SHAPES), "a": _article(color)}


def _s_size(scene, rng):
    return {"size": rng.choice(SIZES)}


def _s_k(scene, rng):
    return {"k": str(rng.randint(1, 3))}


def _s_color_of(scene, rng):
    counts = Counter(o["shape"] for o in scene["objects"])
    single = [sh for sh in SHAPES if counts[sh] == 1]
    if not single:
        return None
    shape = rng.choice(single)
    return {"shape": shape, **_pick_options(rng, _the(scene, shape=shape)["color"], sorted(COLORS))}


def _s_pair(scene, rng):
    objs = _unique_objects(scene)
    if len(objs) < 2:
        return None
    a, b = rng.sample(objs, 2)
    return {"color": a["color"], "shape": a["shape"], "color2": b["color"], "shape2": b["shape"]}


def _s_two_colors(scene, rng):
    present = sorted({o["color"] for o in scene["objects"]})
    first = rng.choice(present)
    return {"color": first, "color2": rng.choice([c for c in sorted(COLORS) if c != first])}


def _s_most_color(scene, rng):
    try:
        best = _unique_max(Counter(o["color"] for o in scene["objects"]))
    except Unanswerable:
        return None
    return _pick_options(rng, best, sorted(COLORS))


def _s_bar(scene, rng):
    return {"color": rng.choice(scene["bars"])["color"]}


def _s_bar_pair(scene, rng):
    a, b = rng.sample(scene["bars"], 2)
    return {"color": a["color"], "color2": b["color"]}


def _s_bar_tallest(scene, rng):
    try:
        best = _unique_max({b["color"]: b["value"] for b in scene["bars"]})
    except Unanswerable:
        return None
    return _pick_options(rng, best, sorted(COLORS))


def _option_of(s, answer):
    return f"option {answer}"


def _color_of_option(s, answer):
    return s[f"o{LETTERS.index(answer)}"]


TEMPLATES: tuple[Template, ...] = (
    Template("count_all", "shapes", "numerical", "count", "How many shapes are there?", _t_count_all, _s_none,
             lambda sc, s, a: f"I count {a} shapes."),
    Template("count_color", "shapes", "numerical", "count", "How many {color} shapes are there?", _t_count_color,
             _s_color, lambda sc, s, a: f"I count the {s['color']} shapes: {a}."),
    Template("count_shape", "shapes", "numerical", "count", "How many {shape}s are there?", _t_count_shape, _s_shape,
             lambda sc, s, a: f"I count the {s['shape']}s: {a}."),
    Template("count_color_shape", "shapes", "numerical", "count", "How many {color} {shape}s are there?",
             _t_count_color_shape, _s_color_shape, lambda sc, s, a: f"I count the {s['color']} {s['shape']}s: {a}."),
    Template("count_size", "shapes", "numerical", "count", "How many {size} shapes are there?", _t_count_size,
             _s_size, lambda sc, s, a: f"I count the {s['size']} shapes: {a}."),
    Template("add_count", "shapes", "numerical", "arithmetic",
             "How many shapes would there be if {k} more were added?", _t_add, _s_k,
             lambda sc, s, a: f"There are {len(sc['objects'])} shapes, and {len(sc['objects'])} + {s['k']} = {a}."),
    Template("exists", "shapes", "multiple choice", "yes/no", "Is there {a} {color} {shape}?", _t_exists,
             _s_color_shape, lambda sc, s, a: f"There is {s['a'] if a == 'yes' else 'no'} {s['color']} {s['shape']}."),
    Template("color_of", "shapes", "multiple choice", "colour", "What color is the {shape}? {options}", _t_color_of,
             _s_color_of, lambda sc, s, a: f"The {s['shape']} is {_color_of_option(s, a)}, {_option_of(s, a)}."),
    Template("left_of", "shapes", "multiple choice", "relation",
             "Is the {color} {shape} left of the {color2} {shape2}?", _t_left, _s_pair,
             lambda sc, s, a: f"The {s['color']} {s['shape']} is {'' if a == 'yes' else 'not '}left of the "
             f"{s['color2']} {s['shape2']}."),
    Template("larger_than", "shapes", "multiple choice", "relation",
             "Is the {color} {shape} larger than the {color2} {shape2}?", _t_larger, _s_pair,
             lambda sc, s, a: f"The {s['color']} {s['shape']} is {_size_of(sc, s['color'], s['shape'])} and the "
             f"{s['color2']} {s['shape2']} is {_size_of(sc, s['color2'], s['shape2'])}."),
    Template("more_than", "shapes", "multiple choice", "comparison",
             "Are there more {color} shapes than {color2} shapes?", _t_more, _s_two_colors,
             lambda sc, s, a: f"There are {len(_objects(sc, color=s['color']))} {s['color']} and "
             f"{len(_objects(sc, color=s['color2']))} {s['color2']} shapes."),
    Template("most_color", "shapes", "multiple choice", "multiple choice", "Which color appears most often? {options}",
             _t_most_color, _s_most_color, lambda sc, s, a: f"{_color_of_option(s, a).capitalize()} appears most, "
             f"{_option_of(s, a)}."),
    Template("bar_count", "chart", "numerical", "count", "How many bars are there?", _t_bar_count, _s_none,
             lambda sc, s, a: f"I count {a} bars."),
    Template("bar_value", "chart", "numerical", "chart", "What is the value of the {color} bar?", _t_bar_value, _s_bar,
             lambda sc, s, a: f"The {s['color']} bar reaches {a}."),
    Template("bar_sum", "chart", "numerical", "arithmetic", "What is the sum of the {color} bar and the {color2} bar?",
             _t_bar_sum, _s_bar_pair, lambda sc, s, a: f"The bars are {_bar(sc, s['color'])['value']} and "
             f"{_bar(sc, s['color2'])['value']}, so {a}."),
    Template("bar_range", "chart", "numerical", "arithmetic",
             "What is the difference between the tallest and the shortest bar?", _t_bar_range, _s_none,
             lambda sc, s, a: f"The tallest is {max(b['value'] for b in sc['bars'])} and the shortest "
             f"{min(b['value'] for b in sc['bars'])}, so {a}."),
    Template("bar_taller", "chart", "multiple choice", "comparison",
             "Is the {color} bar taller than the {color2} bar?", _t_bar_taller, _s_bar_pair,
             lambda sc, s, a: f"The bars are {_bar(sc, s['color'])['value']} and {_bar(sc, s['color2'])['value']}."),
    Template("bar_tallest", "chart", "multiple choice", "multiple choice", "Which bar is the tallest? {options}",
             _t_bar_tallest, _s_bar_tallest, lambda sc, s, a: f"The {_color_of_option(s, a)} bar is the tallest, "
             f"{_option_of(s, a)}."),
)  # fmt: skip
BY_ID = {t.id: t for t in TEMPLATES}
_PATTERNS = [(t, t.pattern) for t in TEMPLATES]


# ---------------------------------------------------------------------------------------------------------------
# Writing questions (seed and eval sets) and answering them (the oracle)
# ---------------------------------------------------------------------------------------------------------------


def render_question(template: Template, slots: dict) -> str:
    values = dict(slots)
    if "o0" in values:
        values["options"] = " ".join(f"{LETTERS[i]}. {values[f'o{i}']}" for i in range(4))
    return template.text.format(**values)


def instantiate(template: Template, scene: dict, rng: random.Random) -> dict | None:
    """One item of `template` on `scene` (type, question, answer, reasoning, template), or None if impossible."""
    if template.kind != scene["kind"]:
        return None
    slots = template.sample(scene, rng)
    if slots is None:
        return None
    try:
        answer = template.answer(scene, slots)
    except Unanswerable:
        return None
    question = render_question(template, slots)
    return {
        "type": template.qtype,
        "question": question,
        "answer": answer,
        "reasoning": template.reason(scene, slots, answer),
        "template": template.id,
    }


def applicable(scene: dict) -> list[Template]:
    return [t for t in TEMPLATES if t.kind == scene["kind"]]


@dataclass(frozen=True)
class OracleResult:
    status: str  # one of STATUSES
    answer: str | None  # the true answer when status == "ok"
    template: str | None  # the matched template id (None for no_template)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def match(question: str) -> tuple[Template, dict] | None:
    """The template a question instantiates and its slots, or None if it is outside the grammar."""
    if not isinstance(question, str):
        return None
    text = normalize(question)
    for template, pattern in _PATTERNS:
        m = pattern.fullmatch(text)
        if m is not None:
            return template, {k: v for k, v in m.groupdict().items() if v is not None}
    return None


def oracle(scene: dict, question: str) -> OracleResult:
    """The true answer to `question` about `scene`, or the reason there is none."""
    found = match(question)
    if found is None:
        return OracleResult("no_template", None, None)
    template, slots = found
    if template.kind != scene["kind"]:
        return OracleResult("wrong_kind", None, template.id)
    try:
        return OracleResult("ok", template.answer(scene, slots), template.id)
    except Unanswerable as exc:
        return OracleResult(exc.status, None, template.id)
