"""Segment the vessels of a fundus photograph with the whole-image model (UNet.pth).

    python predict.py                    # predict/img.png -> result/res.png
    python predict.py --input photos/ --output masks/ --prob

RGB or gray, any size: the output mask (0/255) has the input's size; pixels outside the field
of view are 0. Images from other cameras are rescaled by their field of view to the training
scale and the result mapped back.
"""
from inference import prediction_main

main = prediction_main("UNet.pth", __doc__, " (train it with: python train.py)")

if __name__ == "__main__":
    main()
