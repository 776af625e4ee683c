"""`python -m soul` is the `soul` command."""

from soul.cli import main

main()
