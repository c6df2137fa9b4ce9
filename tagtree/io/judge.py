"""LLM quality judge (scoring stage): instances -> judgements (a 1-6 rating of the response).

Goes through the ``ChatModel`` protocol (``tagtree.io.chat.OpenAIChatModel`` for any
OpenAI-compatible endpoint). Ratings are cached in ``judgements`` keyed by instance and judge
fingerprint (chat model fingerprint + prompt version), so re-runs only ask for what is missing and
a changed model or prompt re-judges. A failed request is stored with status 'error' and retried on
the next run; it never stops the stage.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from tagtree.protocols import ChatModel

PROMPT_VERSION = "judge-v1"

SCHEMA = {
    "type": "object",
    "properties": {"rating": {"type": "integer", "minimum": 1, "maximum": 6}},
    "required": ["rating"],
    "additionalProperties": False,
}

_SYSTEM = (
    "You rate how good an assistant's response is as training data for instruction tuning. "
    "Consider helpfulness, correctness, depth, and whether it follows the instruction. "
    "Use the scale: 1 useless or wrong, 2 poor, 3 mediocre, 4 good, 5 very good, 6 excellent. "
    "Answer with JSON: {\"rating\": <integer 1-6>}."
)


def judge_fingerprint(chat: ChatModel) -> str:
    return f"{chat.fingerprint}|{PROMPT_VERSION}"


def _cut(text: str, limit: int) -> str:
    """Head and tail of a long text: the start frames the task, the end holds the conclusion."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[...]\n{text[-half:]}"


def judge_messages(instruction: str, response: str, max_chars: int = 4000) -> list[dict]:
    return [
        {"role": "system", "content": _SYSTEM},
        {"role": "user", "content": f"Instruction:\n{_cut(instruction, max_chars)}\n\n"
                                    f"Response:\n{_cut(response, max_chars) or '(empty)'}"},
    ]


def parse_rating(result: dict) -> float:
    rating = result.get("rating")
    if isinstance(rating, bool) or not isinstance(rating, (int, float)):
        raise ValueError(f"no numeric rating in {result!r}")
    if not 1 <= rating <= 6:
        raise ValueError(f"rating {rating} is outside 1..6")
    return float(rating)


def judge_instances(store, chat: ChatModel, ids: list[str], *, concurrency: int = 4,
                    max_chars: int = 4000, batch: int = 256) -> dict:
    """Rate every instance of ``ids`` not yet rated by this judge; returns counts and tokens."""
    judge = judge_fingerprint(chat)
    todo = store.unjudged_ids(judge, ids)
    done = failed = 0
    tokens0 = (getattr(chat, "prompt_tokens", 0), getattr(chat, "completion_tokens", 0))

    def one(item):
        iid, instruction, response = item
        try:
            rating = parse_rating(chat.complete_json(
                judge_messages(instruction, response, max_chars), SCHEMA, name="rating"))
            return iid, rating, "ok", None
        except Exception as exc:  # noqa: BLE001 - recorded per instance, retried next run
            return iid, None, "error", f"{type(exc).__name__}: {exc}"[:500]

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for start in range(0, len(todo), batch):
            chunk = todo[start:start + batch]
            instructions, responses = store.instance_texts(chunk)
            results = list(pool.map(one, zip(chunk, instructions, responses, strict=True)))
            # The client sums tokens over all threads: spread this batch's share evenly so the
            # per-instance columns add up to the true total.
            used = (getattr(chat, "prompt_tokens", 0) - tokens0[0],
                    getattr(chat, "completion_tokens", 0) - tokens0[1])
            tokens0 = (tokens0[0] + used[0], tokens0[1] + used[1])
            n = len(results)
            share = [[used[j] // n + (1 if i < used[j] % n else 0) for i in range(n)]
                     for j in (0, 1)]
            store.write_judgements(pa.table({
                "instance_id": [r[0] for r in results], "judge": [judge] * n,
                "rating": pa.array([r[1] for r in results], pa.float32()),
                "status": [r[2] for r in results], "error": [r[3] for r in results],
                "prompt_tokens": pa.array(share[0], pa.int32()),
                "completion_tokens": pa.array(share[1], pa.int32())}))
            done += sum(r[2] == "ok" for r in results)
            failed += sum(r[2] != "ok" for r in results)
    return {"judge": judge, "asked": len(todo), "rated": done, "failed": failed,
            "cached": len(ids) - len(todo)}
