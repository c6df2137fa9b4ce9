"""tagtree: Tree-aware Aligned Global Sampling (TAGS) for instruction-tuning data selection.

The pure core lives in this package (no Prefect, no network, no DuckDB); adapters with I/O live
in ``tagtree.io``; the command line in ``tagtree.cli``.
"""

__version__ = "0.1.0"
