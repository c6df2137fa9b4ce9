"""`python -m tagtree` is the same as the `tagtree` command."""

from tagtree.cli import main

main()
