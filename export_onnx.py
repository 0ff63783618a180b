"""Export trained weights (.pth) to ONNX (.onnx) for inference with ONNX Runtime, without PyTorch.

    python export_onnx.py                       # UNet.pth -> UNet.onnx
    python export_onnx.py UNet_STARE.pth UNet_fast.pth
    python export_onnx.py UNet.pth --out models/drive.onnx

The ONNX file carries everything inference needs in its metadata (method, preprocessing,
threshold, what it was trained on) and the hash of the .pth it came from. Training scripts export
automatically at the end of a run; use this after copying or editing weights by hand.
"""
import argparse

from cli import UserError, run_main


@run_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="*", default=["UNet.pth"], help="checkpoints to export (default: UNet.pth)")
    p.add_argument("--out", default=None, help="output file, for a single checkpoint (default: same name, .onnx)")
    args = p.parse_args(argv)
    if args.out and len(args.weights) != 1:
        raise UserError("--out needs exactly one checkpoint")
    from onnx_model import export

    for w in args.weights:
        if not str(w).endswith(".pth"):
            raise UserError(f"{w}: expected a .pth checkpoint")
        print(f"{w} -> {export(w, args.out)}")


if __name__ == "__main__":
    main()
