"""Shared command line of split_training_set.py and split_testing_set.py."""
import argparse

from cli import add_dataset_args, bounded, run_main
from dataset import make_patches


def split_main(split, seed, doc):
    @run_main
    def main(argv=None):
        p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        add_dataset_args(p)
        p.add_argument("--size", type=bounded(int, 8, 8192), default=512, help="images are resized to SIZE x SIZE first (default: %(default)s)")
        p.add_argument("--patch-size", type=bounded(int, 8, 8192), default=256, help="side of each square patch (default: %(default)s)")
        p.add_argument("--count", type=bounded(int, 1, 100000), default=50, help="patches cut from each image (default: %(default)s)")
        p.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=seed, help="random seed of the patch positions (default: %(default)s)")
        args = p.parse_args(argv)
        n = make_patches(args.root, args.dataset, split, args.size, args.patch_size, args.count, args.seed)
        print(f"wrote {n} patches to {args.root}/{args.dataset}_patch/{split}")

    return main
