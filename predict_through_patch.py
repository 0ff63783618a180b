"""Segment the vessels of a fundus photograph with the patch method (the original local enhancement).

    python predict_through_patch.py      # predict/img.png -> result/res.png
    python predict_through_patch.py --input photos/ --output masks/ --prob

The image is resized to 512x512, cut into overlapping 256x256 windows, each histogram-equalized
and segmented as in training, blended without seams, resized back to the input's size, and
cleared outside the field of view (estimated from the image).
"""
from inference import prediction_main

main = prediction_main("UNet_patch_equalized_patch_256_50.onnx", __doc__,
                       " (export it with: python export_onnx.py UNet_patch_equalized_patch_256_50.pth; train with: "
                       "python split_training_set.py && python equalize_patch.py && python train_patch.py)")

if __name__ == "__main__":
    main()
