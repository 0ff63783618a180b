"""Command-line plumbing shared by every script: user errors end in one clear line."""
import functools
import sys


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


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr)


def add_dataset_args(parser):
    """``--dataset`` and ``--root``, the same in every script."""
    parser.add_argument("--dataset", default="DRIVE", help="dataset folder name, DRIVE or STARE (default: %(default)s)")
    parser.add_argument("--root", default=".", help="folder holding DATASET/ and DATASET_patch/ (default: current folder)")
