"""Command-line plumbing shared by every script: user errors end in one clear line."""
import functools
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent  # the toolkit's folder: the shipped weights are here


class UserError(Exception):
    """An error the user caused and can fix (missing file, bad image, wrong weights...)."""


def run_main(main):
    """Wrap a script's ``main(argv=None)`` so a UserError prints one line and exits with 2.

    KeyboardInterrupt exits with 130 without a traceback. Programming errors still raise.
    """

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130)

    return wrapper


def shipped(name):
    """The file a default ``--weights`` NAME means: NAME in the current folder when there is one (a model of the
    user's, or the toolkit's own folder), else the one shipped beside these scripts (so a script run from another
    folder finds the shipped model), else NAME (whose error then names it)."""
    if Path(name).exists() or not (HERE / name).exists():
        return str(name)
    return str(HERE / name)


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr)


def add_dataset_args(parser):
    """``--dataset`` and ``--root``, the same in every script."""
    parser.add_argument("--dataset", default="DRIVE", help="dataset folder name, DRIVE or STARE (default: %(default)s)")
    parser.add_argument("--root", default=".", help="folder holding DATASET/ and DATASET_patch/ (default: current folder)")


def bounded(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    """An argparse ``type`` that parses ``kind`` (int or float) and refuses values out of range.

    ``bounded(float, 0, 1, lo_open=True, hi_open=True)`` accepts 0 < x < 1. A refused value ends
    in argparse's usage line plus one ``error:`` line naming the flag, before any work starts.
    """
    import argparse
    import math

    left = f"{'>' if lo_open else '>='} {lo}" if lo is not None else ""
    right = f"{'<' if hi_open else '<='} {hi}" if hi is not None else ""
    rule = " and ".join(r for r in (left, right) if r)

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if (lo is not None and (value < lo or (lo_open and value == lo))) or \
                (hi is not None and (value > hi or (hi_open and value == hi))):
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {rule}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def writable_dir(path, what="output folder"):
    """Create ``path`` (and parents) or fail with one line saying why; returns it as a Path."""
    from pathlib import Path

    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the {what} {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"the {what} {path} is not writable")
    return path
