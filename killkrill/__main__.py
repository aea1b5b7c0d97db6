"""``python -m killkrill`` runs the CLI."""

from killkrill.cli.main import main

main()
