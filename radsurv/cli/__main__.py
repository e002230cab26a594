"""``python -m radsurv.cli`` runs the command line."""

from radsurv.cli import main

main()
