"""``python -m sytq_cli``: the same as the ``sytq`` console script."""

from sytq_cli.main import main

main()
