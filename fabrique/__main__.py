"""``python -m fabrique``: the same command as the ``fabrique`` console script."""

from fabrique.cli import main

main()
