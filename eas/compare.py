"""``python -m eas.compare``: compare agents on one budget (see :mod:`eas.search.compare`)."""

from eas.search.compare import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m eas.compare"))
