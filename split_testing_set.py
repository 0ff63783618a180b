"""Cut random patches from the test images: DATASET/test -> DATASET_patch/test.

    python split_testing_set.py          # 512x512, 50 patches of 256x256 per image

Same scheme as split_training_set.py, numbered 1_testing.png, 2_testing.png, ...
(Benchmark numbers are computed on whole test images by evaluate.py, not on these patches.)
"""
from patch_cli import split_main

main = split_main("test", seed=1, doc=__doc__)

if __name__ == "__main__":
    main()
