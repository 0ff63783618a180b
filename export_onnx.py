"""Export trained weights (.pth) to ONNX (.onnx) for inference with ONNX Runtime, without PyTorch.

    python export_onnx.py                       # UNet.pth -> UNet.onnx
    python export_onnx.py UNet_STARE.pth UNet_fast.pth
    python export_onnx.py UNet.pth --out models/drive.onnx

The ONNX file carries everything inference needs in its metadata (method, preprocessing,
threshold, what it was trained on) and the hash of the .pth it came from. Training scripts export
automatically at the end of a run; use this after copying or editing weights by hand.

--int8 also writes an 8-bit copy, NAME_int8.onnx, for CPUs with fast 8-bit arithmetic (x86 with
AVX-512 VNNI or AVX-VNNI, recent Arm; `lscpu | grep -i vnni`): weights int8 (7-bit range, so CPUs
without VNNI compute it without saturating), activations uint8 with ranges calibrated on the
photographs given (the model's own training photographs, never the ones it is scored on); the
logits and the sigmoid stay float. Its maps are close to the float model's, not identical (README,
"An 8-bit copy"). It runs in the light install like any exported model. The shipped UNet_AV.onnx is
the 8-bit copy of UNet_AV.pth, made so (the 25 photographs UNet_AV trained on):

    python export_onnx.py UNet_AV.pth --int8 DRIVE-AV/train/image LES-AV/train/image --out UNet_AV.onnx

A copy is made from the float model: a model that is already an 8-bit copy is refused.
"""
import argparse
from pathlib import Path

from cli import UserError, run_main


def photographs(items):
    """The image files of ``items`` (files, or folders of them), in the order given."""
    from imio import is_image_file, list_images

    found = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += list_images(path, "photographs to calibrate on")
        elif path.is_file() and is_image_file(path):
            found.append(path)
        else:
            raise UserError(f"--int8: {item} is neither an image file nor a folder of them")
    return found


@run_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="*", default=["UNet.pth"],
                   help="checkpoints to export (default: UNet.pth); with --int8 also exported .onnx models")
    p.add_argument("--out", default=None,
                   help="output file, for a single checkpoint (default: same name, .onnx; with --int8 the 8-bit "
                        "copy's name, default NAME_int8.onnx)")
    p.add_argument("--int8", nargs="+", metavar="PHOTO",
                   help="also write an 8-bit copy calibrated on these photographs (files or folders)")
    args = p.parse_args(argv)
    if args.out and len(args.weights) != 1:
        raise UserError("--out needs exactly one checkpoint")
    for w in args.weights:
        if not (str(w).endswith(".pth") or (args.int8 and str(w).endswith(".onnx"))):
            raise UserError(f"{w}: expected a .pth checkpoint" + (" or a .onnx model" if args.int8 else ""))
    calibration = photographs(args.int8) if args.int8 else None
    from onnx_model import export, quantize

    for w in args.weights:
        model = Path(w)
        if model.suffix == ".pth":
            model = export(w, None if args.int8 else args.out)
            print(f"{w} -> {model}")
        if calibration:
            print(f"{model} -> {quantize(model, calibration, args.out)} (int8, {len(calibration)} photographs)")


if __name__ == "__main__":
    main()
