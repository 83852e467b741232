"""``python -m eas.train_controller``: run an architecture search (see :mod:`eas.cli.search`)."""

from eas.cli import search

if __name__ == "__main__":
    raise SystemExit(search.main())
