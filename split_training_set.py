"""Cut random patches from the training images: DATASET/train -> DATASET_patch/train.

    python split_training_set.py         # 512x512, 50 patches of 256x256 per image

Each image (and its label, kept binary) is resized to --size, then --count random windows are
cut and numbered 1_training.png, 2_training.png, ...; patches.csv records where each came from.
A re-run replaces the previous patches.
"""
from patch_cli import split_main

main = split_main("train", seed=0, doc=__doc__)

if __name__ == "__main__":
    main()
