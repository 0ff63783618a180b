"""Segment the vessels of a fundus photograph with the whole-image model (UNet.onnx, exported from UNet.pth).

    python predict.py                    # predict/img.png -> result/res.png
    python predict.py --input photos/ --output masks/ --prob
    torchrun --standalone --nproc_per_node=4 predict.py --input archive/ --output masks/ --skip-existing

RGB or gray, any size: the output mask (0/255) has the input's size; pixels outside the field
of view are 0. Images from other cameras are rescaled by their field of view to the training
scale and the probability map brought back (bicubic interpolation of the logit). A .onnx
model runs through ONNX Runtime (PyTorch is not loaded: fast start, small memory);
--weights UNet.pth gives the same masks through PyTorch.
"""
from inference import prediction_main

main = prediction_main("UNet.onnx", __doc__,
                       " (export it from UNet.pth with: python export_onnx.py UNet.pth; train with: python train.py)")

if __name__ == "__main__":
    main()
