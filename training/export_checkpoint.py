"""Write the weights of a training checkpoint as a spandrel-loadable .safetensors file (to try a run mid-way).

    python training/export_checkpoint.py training/runs/x4/checkpoint.pt /tmp/x4-now.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    ckpt = torch.load(args.checkpoint, map_location="cpu")
    state = {k: v.float().contiguous() for k, v in ckpt["model"].items()}
    save_file(state, str(args.out), metadata={"steps": str(ckpt["step"]), "minutes": f"{ckpt['elapsed'] / 60:.1f}"})
    print(f"{args.out}: step {ckpt['step']}, {ckpt['elapsed'] / 60:.1f} min")


if __name__ == "__main__":
    main()
