"""Configuration: one typed recipe drives the CLI, the flows and the deployments.

Precedence, lowest to highest: defaults < recipe file (``tagtree.toml``) < environment variables
< explicit overrides (CLI flags, flow parameters). Every knob is documented here once; ``tagtree
config show`` prints them all with their values and where each value came from.

Environment variables are ``TAGTREE_<SECTION>_<KNOB>`` (e.g. ``TAGTREE_ANNOTATE_CONCURRENCY``),
plus the conventional aliases listed in ``ENV_ALIASES``. Secrets are never knobs: the API key is
read from the environment variable *named* by ``llm.api_key_env`` when a request is made.

The knobs live in sections by stage (``tagtree.config.inputs``: store, ingest, llm, annotate,
embed; ``tagtree.config.selection``: tree, score, sample; ``tagtree.config.outputs``: export,
runner, objects, report); ``tagtree.config.recipe`` composes them into ``Config`` and loads it.
"""

from tagtree.config.inputs import (
    AnnotateConfig,
    EmbedConfig,
    IngestConfig,
    LLMConfig,
    StoreConfig,
)
from tagtree.config.outputs import ExportConfig, ObjectStoreConfig, ReportConfig, RunnerConfig
from tagtree.config.recipe import (
    DEFAULT_RECIPE,
    ENV_ALIASES,
    Config,
    env_name,
    knobs,
    knobs_markdown,
    load_config,
    parse_budget,
)
from tagtree.config.section import Section
from tagtree.config.selection import SampleConfig, ScoreConfig, TreeConfig

__all__ = ["AnnotateConfig", "Config", "DEFAULT_RECIPE", "ENV_ALIASES", "EmbedConfig",
           "ExportConfig", "IngestConfig", "LLMConfig", "ObjectStoreConfig", "ReportConfig",
           "RunnerConfig", "SampleConfig", "ScoreConfig", "Section", "StoreConfig",
           "TreeConfig", "env_name", "knobs", "knobs_markdown", "load_config", "parse_budget"]
