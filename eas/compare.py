"""``python -m eas.compare``: compare agents on one budget (see :mod:`eas.cli.compare`)."""

from eas.cli import compare

if __name__ == "__main__":
    raise SystemExit(compare.main(prog="python -m eas.compare"))
