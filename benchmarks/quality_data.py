"""Labelled data for ``benchmarks/quality.py`` (and the planted-set tests): each data set as a pool
file, an optional target-domain file, and the labels of every row, none of which the pipeline
ever reads (labels sit in fields no reader maps to text).

- ``mtbench``: MT-Bench's 80 questions (examples/mt_bench.jsonl), 8 categories; target:
  examples/target_coding_math.jsonl (first turns of the coding and math questions).
- ``selfinstruct``: self-instruct's 252 user-oriented instructions (examples/), labelled by the
  app that motivated them (71 apps); target: 20 held-out-by-copy rows of 3 apps.
- ``mmlu``: the MMLU half in benchmarks/data/mmlu_half.jsonl (28 subjects > 14 subcategories >
  4 categories); question + choices as the instruction, the right choice as the response;
  target: 30 held-out questions each of high_school_chemistry and virology (not in the pool).
- ``planted``: a topic > subtopic > concept hierarchy of real phrases written for this project
  (benchmarks/data/planted_hierarchy.json); each instance asks about 3-4 concepts of one
  subtopic and the (loopback fake) LLM tagger returns exactly those concepts as its tags.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
EXAMPLES = ROOT / "examples"


@dataclass
class LabelledSet:
    name: str
    pool: Path
    target: Path | None
    top_field: str  # label the tree's top level is compared with
    leaf_field: str  # finest label: the leaf level and coverage are measured on it
    target_labels: set[str] = field(default_factory=set)  # leaf_field values of the target
    planted_tags: dict[str, list[str]] | None = None  # instruction -> tags (fake LLM)
    # How a person writes a label as a heading, for the naming score (label -> display name);
    # only where the raw label is an acronym or a joined word the embedder cannot read.
    display: dict[str, str] = field(default_factory=dict)
    # Labels that name no topic ("other"): nodes whose majority is one are not scored for names.
    unnamed: frozenset[str] = frozenset({"other", "?"})


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def mtbench(work: Path) -> LabelledSet:
    return LabelledSet("mtbench", EXAMPLES / "mt_bench.jsonl",
                       EXAMPLES / "target_coding_math.jsonl", "category", "category",
                       {"coding", "math"},
                       display={"stem": "science, technology, engineering (STEM)",
                                "roleplay": "role-play"})


def selfinstruct(work: Path) -> LabelledSet:
    rows = _read_jsonl(EXAMPLES / "self_instruct_alpaca.jsonl")
    apps = ("Leetcode", "Gmail", "Netflix")
    target = [r for r in rows if r["motivation_app"] in apps][:20]
    # A target row must not be a pool row: the instruction is kept, the response dropped.
    target = [{"prompt": r["instruction"] + ("\n\n" + r["input"] if r.get("input") else ""),
               "motivation_app": r["motivation_app"]} for r in target]
    return LabelledSet("selfinstruct", EXAMPLES / "self_instruct_alpaca.jsonl",
                       _write_jsonl(work / "selfinstruct_target.jsonl", target),
                       "motivation_app", "motivation_app", set(apps))


MMLU_TARGET_SUBJECTS = ("high_school_chemistry", "virology")


def mmlu_row(r: dict) -> dict:
    letters = "ABCD"
    choices = "\n".join(f"{letters[i]}. {c}" for i, c in enumerate(r["choices"]))
    answer = r["choices"][letters.index(r["answer"])]
    return {"prompt": f"{r['question']}\n{choices}", "response": f"{r['answer']}. {answer}",
            "subject": r["subject"], "subcategory": r["subcategory"], "category": r["category"]}


def mmlu(work: Path, per_target_subject: int = 30) -> LabelledSet:
    rows = [mmlu_row(r) for r in _read_jsonl(DATA / "mmlu_half.jsonl")]
    pool, target, taken = [], [], {s: 0 for s in MMLU_TARGET_SUBJECTS}
    for r in rows:  # the first questions of each target subject become the target sample
        s = r["subject"]
        if s in taken and taken[s] < per_target_subject:
            taken[s] += 1
            target.append({"prompt": r["prompt"], "subject": s, "subcategory": r["subcategory"]})
        else:
            pool.append(r)
    return LabelledSet("mmlu", _write_jsonl(work / "mmlu_pool.jsonl", pool),
                       _write_jsonl(work / "mmlu_target.jsonl", target), "subcategory", "subject",
                       set(MMLU_TARGET_SUBJECTS))


TEMPLATES = (
    "Explain how {a} relates to {b}, and give an example involving {c}.",
    "Compare {a} and {b}. Where does {c} fit in?",
    "Write a short study note on {a}, {b} and {c}.",
    "A student confuses {a} with {b}. Clear it up, mentioning {c}.",
    "What should a beginner know about {a}? Cover {b} and {c} too.",
    "Give three exam questions testing {a}, {b} and {c}, with answers.",
)


def planted_rows(per_subtopic: int = 12, seed: int = 0, tags_per_row: int = 4,
                 hierarchy: dict | None = None) -> list[dict]:
    """Instances of the planted hierarchy: each asks about concepts of one subtopic; ``tags`` are
    the concepts the fake LLM returns (3 named in the text plus one more of the subtopic)."""
    hierarchy = hierarchy or json.loads((DATA / "planted_hierarchy.json").read_text())
    rng = random.Random(seed)
    rows = []
    for topic, subtopics in hierarchy.items():
        for subtopic, concepts in subtopics.items():
            for i in range(per_subtopic):
                tags = rng.sample(concepts, min(tags_per_row, len(concepts)))
                a, b, c = tags[:3]
                text = TEMPLATES[(i + len(rows)) % len(TEMPLATES)].format(a=a, b=b, c=c)
                rows.append({"prompt": text, "topic": topic, "subtopic": subtopic, "tags": tags})
    return rows


def planted(work: Path) -> LabelledSet:
    rows = planted_rows()
    pool = [{"prompt": r["prompt"], "topic": r["topic"], "subtopic": r["subtopic"]} for r in rows]
    return LabelledSet("planted", _write_jsonl(work / "planted_pool.jsonl", pool), None,
                       "topic", "subtopic", planted_tags={r["prompt"]: r["tags"] for r in rows})


LOADERS = {"mtbench": mtbench, "selfinstruct": selfinstruct, "mmlu": mmlu, "planted": planted}
