"""``python -m pingkiller``."""

from pingkiller.cli import main

main()
