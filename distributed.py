"""Where the computation runs: device selection, and torchrun's processes (torch.distributed).

``torchrun`` does the launching and sets RANK, WORLD_SIZE and LOCAL_RANK; without it a script is
one process of rank 0. Only rank 0 writes files and prints. The backend is NCCL on CUDA GPUs,
Gloo on CPUs.
"""
import os

from cli import UserError

DEVICES = "auto, cpu, cuda, cuda:N or mps"


def world():
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) for a plain run."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def is_main():
    return world()[0] == 0


def resolve_device(name="auto"):
    """A torch.device from ``--device``; fails in one line when the device is not there.

    ``auto``: CUDA when PyTorch sees a GPU, else Apple's MPS, else the CPU. Under torchrun, a
    CUDA device without an index is the process's local rank (one GPU per process).
    """
    import torch

    _, _, local = world()
    name = (name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise UserError("--device mps: Apple's Metal backend is not available here; use --device cpu or auto")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: PyTorch sees no CUDA GPU on this machine; use --device cpu or auto")
        index = local if name == "cuda" else name.split(":", 1)[1]
        try:
            index = int(index)
        except ValueError:
            raise UserError(f"--device {name}: expected cuda or cuda:N with N a number") from None
        if not 0 <= index < torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise UserError(f"--device {name}: unknown device (choose {DEVICES})")


def _mps_available():
    import torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def add_device_arg(parser):
    parser.add_argument("--device", default="auto",
                        help=f"where to compute: {DEVICES} (default: %(default)s = CUDA if present, else MPS, else CPU)")


def init(device=None):
    """Join torchrun's process group (NCCL for a CUDA device, Gloo otherwise); no-op for a single process."""
    if world()[1] == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")


def shutdown():
    if world()[1] > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def gather(obj):
    """Every rank's ``obj`` as a list on rank 0 (None elsewhere); ``[obj]`` for a single process."""
    if world()[1] == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather(obj):
    """Every rank's ``obj`` as a list, on every rank."""
    if world()[1] == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    if world()[1] == 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def average(tensors):
    """Replace each tensor, in place, by its mean over the ranks (a single process: unchanged)."""
    if world()[1] == 1:
        return
    import torch.distributed as dist

    for t in tensors:
        dist.all_reduce(t)  # a sum: Gloo has no AVG
        t /= dist.get_world_size()


def shard(items):
    """This rank's share of ``items``: every WORLD_SIZE-th one from RANK (each item exactly once)."""
    rank, size, _ = world()
    return list(items)[rank::size]
