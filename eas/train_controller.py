"""``python -m eas.train_controller``: run an architecture search (see :mod:`eas.search.train_controller`)."""

from eas.search.train_controller import main

if __name__ == "__main__":
    raise SystemExit(main())
