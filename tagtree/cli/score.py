"""`tagtree score`: recompute the scores (richness, optional LLM judge, quality) on a tree."""

from __future__ import annotations

import typer

from tagtree.cli.common import ConfigOption, DbOption, console, settings
from tagtree.errors import TagtreeError


def register(app: typer.Typer) -> None:
    app.command(epilog="Examples: tagtree score --db pool.duckdb; tagtree score --judge "
                       "--llm-base-url http://localhost:8000/v1 --llm-model "
                       "Qwen/Qwen2.5-7B-Instruct --judge-weight 0.5")(score)


def score(
    judge: bool = typer.Option(None, "--judge/--no-judge", help="Rate responses 1-6 with the "
                               "LLM judge first (only instances it has not rated yet are "
                               "asked) [score.judge: off]."),
    judge_weight: float = typer.Option(None, "--judge-weight", help="Weight of the judge in "
                                       "quality q(x) [0.5]."),
    tree: str = typer.Option(None, "--tree", help="Tree version [the latest]."),
    llm_base_url: str = typer.Option(None, "--llm-base-url",
                                     help="OpenAI-compatible endpoint of the judge "
                                     "(env OPENAI_BASE_URL)."),
    llm_model: str = typer.Option(None, "--llm-model", help="Judge model (env TAGTREE_LLM_MODEL)."),
    db: str = DbOption,
    config: str = ConfigOption,
) -> None:
    """Recompute every pool instance's scores on the current tree (or --tree).

    `sample` reuses stored scores; run this after turning the judge on, changing a score knob
    or grounding new data, and the next `sample`/`compare` selects with the new quality.
    """
    from tagtree.io.store import Store
    from tagtree.stages.score import run_score

    cfg = settings(config, {"store.db": db, "score.judge": judge,
                            "score.judge_weight": judge_weight, "llm.base_url": llm_base_url,
                            "llm.model": llm_model})
    with Store(cfg.store.db) as store:
        version = tree or store.latest_tree_version()
    if version is None:
        raise TagtreeError("no knowledge tree in the store (run `tagtree curate` or build one)")
    with console.status("scoring..." + (" (judging first)" if cfg.score.judge else "")):
        result = run_score(cfg.store.db, cfg.model_dump(), version)
    console.print(result["line"], markup=False, highlight=False, soft_wrap=True)
    if cfg.score.judge:
        j = result["judge"]
        console.print(f"judge {j.get('judge')}: asked {j.get('asked', 0):,}, rated "
                      f"{j.get('rated', 0):,}, failed {j.get('failed', 0):,}, cached "
                      f"{j.get('cached', 0):,}", markup=False, highlight=False, soft_wrap=True)
