"""Choose a vessel model's *tree threshold* and store it in its weights: the measuring setting.

A threshold chosen for pixel F1 leaves the faint thin vessels out of the mask, so the tree it draws
is short and broken (README, "Topology"). The tree threshold is the threshold at which the
centreline length of the model's masks, summed over annotated photographs, equals the annotations'
(topology.length_matching_threshold; the centreline the vessel measurements use). It is chosen on
photographs the model was not trained on and that no test set holds, and stored beside the pixel
threshold; predict.py, measure.py and evaluate.py use it with --tree (the default stays the pixel one).
With ``--vary thin`` the pixel threshold is kept and what is chosen the same way is the level LOW down
to which the map's thin vessels are added as 1 px centrelines (postprocess.py ``--thin-vessels``): the
tree lengthens without the vessels the mask already has growing wider.

    python tree_threshold.py --weights UNet.pth --images RUNS/STARE/train RUNS/FIVES/test:6 RUNS/lesval/LES-AV/test
    python tree_threshold.py --weights UNet.pth --images ... --bridge --min-fragment 20   # with gaps bridged, specks removed
    python tree_threshold.py --weights UNet.pth --images ... --vary thin --min-fragment 20 # keep the pixel threshold; choose
                                                                                          # the level down to which thin vessels
                                                                                          # are kept as centrelines
    python tree_threshold.py --weights UNet.pth --images ... --dry-run                     # print, write nothing

Each --images folder is a prepared split (image/, label/, mask/ as prepare_data.py writes them);
FOLDER:N takes its first N photographs. Prints, per folder and pooled, pixel F1 and the tree's
length and branch-point errors at the pixel threshold and at the tree threshold; then writes
``tree`` into the .pth (atomically) and exports the .onnx beside it.
"""
import argparse
from pathlib import Path

from cli import UserError, run_main
from postprocess import add_postprocess_args


def folder_arg(text):
    """FOLDER or FOLDER:N -> (Path, N or 0)."""
    path, colon, count = text.rpartition(":")
    return (Path(path), int(count)) if colon and count.isdigit() else (Path(text), 0)


def load_images(spec, trained_on, datasets):
    """The samples of one --images folder (DATASET/SPLIT, as prepare_data.py lays them out); refuses
    photographs the weights were trained on (names listed in them, of a dataset they were trained on)."""
    from dataset import load_sample, pair_files

    folder, count = spec
    samples = [load_sample(*t) for t in pair_files(folder, require_mask=False)]
    samples = samples[:count] if count else samples
    mine = folder.resolve().parent.name in datasets
    seen = sorted({s.name for s in samples} & set(trained_on)) if mine else []
    if seen:
        raise UserError(f"{folder}: the weights were trained on {', '.join(seen[:3])}{' ...' if len(seen) > 3 else ''}; "
                        "choose on photographs they have not seen")
    return samples


def report(name, samples, probs, settings, bridge, min_fragment):
    """One printed line per (label, threshold, thin level): pixel F1 and the tree's errors of these
    images, pooled."""
    from evaluate import evaluate

    for label, t, thin in settings:
        s, _, _ = evaluate(samples, probs, t, bridge, min_fragment, thin)
        level = f"{t:.3f}" + (f", thin vessels {thin:.3f}" if thin else "")
        print(f"  {name:28s} {label:5s} {level}: F1 {s['f1']:.4f}  clDice {s['cldice']:.4f}  length {s['length_error']:+.1%}"
              f"  branch points {s['branch_error']:+.1%}  end points {s['end_error']:+.1%}")


@run_main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="UNet.pth", help="the vessel model's .pth (default: %(default)s)")
    p.add_argument("--images", nargs="+", type=folder_arg, required=True, metavar="FOLDER[:N]",
                   help="prepared splits of annotated photographs the model was not trained on (not test sets)")
    p.add_argument("--vary", choices=["threshold", "thin"], default="threshold",
                   help="what is chosen: the threshold (default), or, the pixel threshold kept, the level down to which "
                        "thin vessels are kept as 1 px centrelines (postprocess.py --thin-vessels)")
    add_postprocess_args(p.add_argument_group("what the setting does besides"), tree=False, thin=False)
    p.add_argument("--dry-run", action="store_true", help="print the choice, write nothing")
    args = p.parse_args(argv)
    if not str(args.weights).endswith(".pth"):
        raise UserError(f"{args.weights}: expected a .pth checkpoint (its .onnx is exported from it)")

    from inference import Segmenter
    from topology import length_matching_threshold
    from unet import read_checkpoint, save_checkpoint

    ckpt = read_checkpoint(args.weights)
    seg = Segmenter.from_file(args.weights)
    if seg.classes != "vessel":
        raise UserError(f"{args.weights} is an artery/vein model; the tree setting is for vessel models")
    info = ckpt.get("info", {})
    trained_on = info.get("train_images", []) + info.get("val_images", [])
    datasets = set(str(info.get("trained_on", info.get("dataset", ""))).split("+"))
    sets = []
    for spec in args.images:
        samples = load_images(spec, trained_on, datasets)
        if not samples:
            raise UserError(f"{spec[0]}: no photographs")
        sets.append((spec, samples, [seg.probability(s.image, s.fov) for s in samples]))
    everything = [s for _, ss, _ in sets for s in ss]
    maps = [m for _, _, ms in sets for m in ms]
    thin = args.vary == "thin"
    t, error = length_matching_threshold(everything, maps, args.bridge, args.min_fragment,
                                         threshold=seg.threshold if thin else None)
    threshold, level = (seg.threshold, t) if thin else (t, 0.0)
    print(f"{args.weights}: {'thin vessels kept down to' if thin else 'tree threshold'} {t:.3f} (pixel threshold "
          f"{seg.threshold:.3f}); pooled length error there {error:+.1%}, over {len(everything)} photographs")
    for (folder, count), samples, probs in sets:
        report(f"{folder}{f':{count}' if count else ''}", samples, probs,
               [("pixel", seg.threshold, 0.0), ("tree", threshold, level)], args.bridge, args.min_fragment)
    if args.dry_run:
        return
    ckpt["tree"] = {"threshold": float(threshold), "thin": float(level), "bridge": args.bridge, "min_fragment": args.min_fragment,
                    "chosen_on": [f"{folder}{f':{count}' if count else ''}" for (folder, count), _, _ in sets],
                    "images": [s.name for s in everything], "length_error": round(error, 4)}
    save_checkpoint(args.weights, ckpt)
    from onnx_model import export

    print(f"wrote the tree setting into {args.weights}; exported {export(args.weights)}")


if __name__ == "__main__":
    main()
