"""Configuration sections of the tree and the selection: tree, score, sample."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tagtree.config.section import Section


class TreeConfig(Section):
    branching: int = Field(8, ge=2, description="Average children per internal node (k per level).")
    leaf_size: int = Field(6, ge=1, description="Average canonical tags per leaf.")
    root_max: int = Field(20, ge=2, description="Stop when a level has at most this many nodes.")
    max_depth: int = Field(6, ge=1, description="Most levels above the leaves.")
    min_tag_freq: int = Field(1, ge=1, description="Drop tags seen fewer times than this.")
    context: Literal["instances", "tags", "none"] = Field(
        "instances",
        description="Where a tag's context vector comes from: the embeddings of the instances "
        "it occurs in, the string vectors of the tags it occurs with, or none (strings only).",
    )
    context_weight: float = Field(
        1.0, ge=0, le=1,
        description="Leaves cluster (1-w)*string + w*context vectors: 0 = tag strings only, "
        "1 = only the instances a tag occurs in.",
    )
    upper_context_weight: float = Field(
        0.5, ge=0, le=1,
        description="The same mix for the levels above the leaves (node means of it).",
    )
    structure_weight: float = Field(
        0.5, ge=0, le=4,
        description="The top level clusters the leaves on [centroid, w * spectral embedding of "
        "the leaf graph] (leaves linked by shared instances and by instances that are nearest "
        "neighbours); 0 = centroids only (the level-by-level cascade). Needs tree.context.",
    )
    structure_neighbours: int = Field(
        10, ge=1, le=200, description="Nearest instances per instance in that leaf graph.",
    )
    consensus_runs: int = Field(
        50, ge=0, le=500,
        description="The structured top level is the consensus (co-clustering share, average "
        "linkage) of this many k-means runs; 0 = the best objective of up to 20 restarts.",
    )
    k_search: bool = Field(
        True,
        description="Choose each level's cluster count by silhouette among counts around "
        "leaf_size / branching (and root_max/4..root_max on top); false: the fixed ratios.",
    )
    merge_threshold: float = Field(
        0.92,
        ge=0,
        le=1,
        description="Cosine similarity above which tags are merged as near-duplicates.",
    )
    vocabulary: str = Field(
        "builtin",
        description="Topic headings that name the upper levels offline: 'builtin' (tagtree's "
        "own list of disciplines, fields and task types), a path to an indented outline file "
        "(one heading per line, two spaces per tier), or 'none' (names from member tags only).",
    )
    vocabulary_min_score: float = Field(
        0.35, ge=-1, le=2,
        description="A node takes a heading only when its match score (cosine plus "
        "distinctiveness) reaches this; otherwise its member tags name it.",
    )
    refine_with_llm: bool = Field(False, description="Name/merge/reassign clusters with the LLM.")
    refine_min_level: int = Field(
        1, ge=0, description="Lowest level refined by the LLM (0 = leaves too: one call per leaf)."
    )
    tagger: str | None = Field(
        None,
        description="Tagger fingerprint whose annotations build the tree; unset: the one "
        "with the most usable annotations.",
    )
    far_quantile: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="A new tag is 'far' when its similarity to the nearest leaf "
        "is below this quantile of the tree's own tags' similarities (drift statistic).",
    )
    drift_threshold: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of a run's tag occurrences far from their leaf (new data, "
        "measured on the run's own datasets) above which curate rebuilds the tree.",
    )
    seed: int = Field(0, description="Random seed: same seed, same tree.")
    reuse: bool = Field(
        True,
        description="curate grounds new data on the store's current tree (same tagger and "
        "settings) while drift measured on the new data stays at or under drift_threshold; "
        "false: build the tree again every run.",
    )


class ScoreConfig(Section):
    judge: bool = Field(
        False, description="Rate responses 1-6 with the LLM judge (costs requests)."
    )
    judge_weight: float = Field(0.5, ge=0, le=1, description="Weight of the judge in quality q(x).")
    judge_concurrency: int = Field(4, ge=1, description="Judge requests in flight at once.")
    judge_max_chars: int = Field(
        4000,
        ge=200,
        description="Instruction and response are each cut to this many characters "
        "in the judge prompt (head and tail kept).",
    )
    richness_quantile: float = Field(
        0.99,
        gt=0,
        le=1,
        description="Richness = raw IC sum / this quantile of the pool, clipped "
        "at 1. Lower: more instances reach the top score.",
    )
    quality_floor: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Lowest quality q(x); q = floor + (1 - floor) * score. "
        "Higher: quality matters less in the sampling objective.",
    )


class SampleConfig(Section):
    budget: str = Field("0.05", description="Fraction (<1, e.g. 0.05) or count (e.g. 5000).")
    method: Literal["tags", "random", "instag", "deita", "kcenter", "quality",
                    "kmeans"] = Field(
        "tags", description="Selection method; 'tags' is TAGS, the rest are baselines."
    )
    pool: list[str] | None = Field(
        None,
        description="Datasets the selection draws from (a list, or comma-separated in the "
        "environment); unset: every pool dataset in the store. A curate run sets it to the "
        "datasets it ingested (plus its `pool_with`), so one dataset's run selects from it only.",
    )
    align: Literal["penalty", "quota", "none"] = Field(
        "penalty",
        description="How a target sample steers selection: KL penalty, quotas per "
        "node, or not at all ('none'). Used only when a target sample is stored.",
    )
    align_leaf_weight: float = Field(
        1.0, ge=0,
        description="With a target: a bonus for picks in the leaves where the target's own "
        "instances sit (the target's leaf density, 1 at its densest leaf), in units of one "
        "newly covered leaf; it decides which member of an aligned node is picked. 0: off.",
    )
    align_lambda: float = Field(
        2.0,
        ge=0,
        description="Weight of the KL penalty; 1 makes one nat of KL worth about one "
        "new leaf per selected instance. Higher: closer to the target, less diversity "
        "(2: with centrality on, 1 let MT-Bench's 5% selection drop a target pick).",
    )
    align_smoothing: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="Share of the uniform distribution mixed into leaf "
        "distributions before KL (keeps KL finite). Higher: misses cost less.",
    )
    align_level: int = Field(
        -1,
        ge=-1,
        description="Tree level on which penalty and quota alignment match the target (0 = "
        "leaves); -1: the lowest level at which the target touches at most budget-many nodes.",
    )
    concave: Literal["sqrt", "log1p"] = Field(
        "log1p", description="h in g(m) = min(1, m) + mass_weight*h(m): returns on a node's "
        "mass beyond its first instance."
    )
    mass_weight: float = Field(
        0.1,
        ge=0,
        description="Weight of h(m) against a node's coverage. 0: pure coverage; higher: more "
        "repeats in nodes already covered before covering new ones at lower levels.",
    )
    coverage: Literal["path", "typical"] = Field(
        "path",
        description="How a pick covers the nodes of its primary path: 'path' fully, "
        "'typical' by the share of its tags under each (prefers few-tag, typical instances).",
    )
    centrality: float = Field(
        0.3,
        ge=0,
        lt=0.5,
        description="Share of a node's coverage earned by how central the pick is among the "
        "node's instances (embedding cosine to their mean): 0 = any member covers it fully; "
        "higher = the most representative member is preferred, as k-means medoids are.",
    )
    kernel_tau: float = Field(
        0.7,
        gt=0,
        le=1,
        description="Covering a leaf also covers the leaves whose instances' mean embedding is "
        "closer than this cosine, in proportion (a topic split over two leaves counts once): "
        "1 = off (each leaf on its own).",
    )
    kernel_top_tau: float = Field(
        0.2,
        gt=0,
        le=1,
        description="The same for the top level's nodes: a budget smaller than the top level "
        "goes to top nodes unlike the ones it has (two coding nodes count as one until the "
        "other topics have a pick); 1 = off.",
    )
    top_mass_power: float = Field(
        0.5,
        ge=0,
        le=2,
        description="A top-level node's coverage weight is (its instances / the top level's "
        "mean) to this power: a budget smaller than the top level goes first to the nodes "
        "that hold more of the pool; 0 = every top node counts the same.",
    )
    kernel_cooc_tau: float = Field(
        0.3,
        gt=0,
        le=1,
        description="Covering a leaf also covers the leaves whose tags the same instances carry "
        "(cosine of their instance columns above this, in proportion), when their meanings "
        "are at least kernel_cooc_min_cos alike: one subtopic whose tags fell into two leaves "
        "counts once; 1 = off.",
    )
    kernel_cooc_min_cos: float = Field(
        0.4,
        ge=-1,
        le=1,
        description="Cosine of two leaves' instance-mean embeddings below which their "
        "co-occurrence does not count (kernel_cooc_tau).",
    )
    length_band: float = Field(
        1.25,
        description="Keep an unaligned selection's mean instruction length within [1/b, b] "
        "times the pool's (b = length_band): the cheapest swaps inside a top-level node, after "
        "a searched length bonus when the drift is too wide for swaps (docs/sample.md); "
        "0 = off.",
    )
    quality_weight: float = Field(
        0.25,
        ge=0,
        description="Weight of q(x) in the objective, in units of one newly covered leaf. "
        "Higher: quality counts more against coverage; 0: coverage only.",
    )
    level_decay: float = Field(
        0.7,
        gt=0,
        description="gamma = decay**(levels below the top): weight of covering a node at each "
        "level. Lower: the top level dominates more; 1: every level counts the same.",
    )
    strategy: Literal["lazy", "stochastic"] = Field(
        "lazy",
        description="Greedy variant: 'lazy' (exact greedy result) or 'stochastic' "
        "(faster, (1-1/e-epsilon) in expectation).",
    )
    epsilon: float = Field(0.01, gt=0, lt=1, description="'stochastic': accuracy/speed trade-off.")
    deita_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="'deita': cosine similarity at which a candidate counts as a "
        "repeat of a better instance already taken.",
    )
    kcenter_max_pool: int = Field(
        100_000, ge=1, description="'kcenter': run on a random subset this large (it is O(n k d))."
    )
    dup_threshold: float = Field(
        0.95,
        gt=0,
        le=1,
        description="Metric 'near_duplicates': cosine at which two picks count as near-duplicates.",
    )
    seed: int = Field(0, description="Random seed for sampling and random baselines.")


    @field_validator("pool", mode="before")
    @classmethod
    def _split_pool(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()] or None
        return value

    @field_validator("length_band")
    @classmethod
    def _band(cls, value: float) -> float:
        if value < 0 or 0 < value < 1:
            raise ValueError("length_band is a factor >= 1 (1.25: within 0.8-1.25x the pool's "
                             "mean length), or 0 to turn the balance off")
        return value
