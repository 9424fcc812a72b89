#!/usr/bin/env python3
"""Converts the common downloads of ARL's starting weights into the safetensors files that
`[model.init]` takes (configs/pretrain-base.toml), without ever unpickling arbitrary code:

  scripts/convert_weights.py vision ViT-B-16.pt data/weights/clip-vit-b16.safetensors
  scripts/convert_weights.py vision clip-vit-base-patch16/ data/weights/clip-vit-b16.safetensors
  scripts/convert_weights.py text roberta-base/ data/weights/roberta-base.safetensors
  scripts/convert_weights.py whole meter.ckpt data/weights/meter.safetensors

SOURCE is a file or a Hugging Face repository folder (its model.safetensors, else its
pytorch_model.bin). Pickled files (.bin, .pt, .ckpt) are read with
`torch.load(weights_only=True)`, which refuses any object that is not a tensor or a plain
container; OpenAI's CLIP .pt files are TorchScript archives, read with `torch.jit.load`, which
builds TorchScript modules and never runs Python code from the file. The part of the file that
the key takes is kept: `vision` keeps the vision tower of a whole CLIP model (`vision_model.*`
or `visual.*`), `text` drops a masked-LM head (`lm_head.*`, `cls.*`), `whole` takes a Lightning
checkpoint's `state_dict`. Tensors are written contiguous and float32 unless --keep-dtype.
"""

import argparse
import os
import sys
import zipfile

import torch
from safetensors.torch import load_file, save_file


def is_torchscript(path):
    """A TorchScript archive: a zip with a `code/` folder (torch.save zips have none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.startswith("code/") for name in archive.namelist())


def read(source):
    """The tensors of SOURCE by name."""
    if os.path.isdir(source):
        for name in ("model.safetensors", "pytorch_model.bin"):
            if os.path.exists(os.path.join(source, name)):
                return read(os.path.join(source, name))
        sys.exit(f"{source}: no model.safetensors or pytorch_model.bin in the folder")
    if source.endswith(".safetensors"):
        return load_file(source)
    if is_torchscript(source):
        return torch.jit.load(source, map_location="cpu").state_dict()
    try:
        loaded = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # the refusal names the object it would not build
        sys.exit(f"{source}: refused to load (not plain tensors; nothing from it was run): {error}")
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]  # a Lightning checkpoint
    if not isinstance(loaded, dict):
        sys.exit(f"{source}: holds a {type(loaded).__name__}, not a dict of tensors")
    return {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}


def select(key, tensors):
    """The tensors that `[model.init] KEY` takes."""
    if key == "vision":
        for prefix in ("vision_model.", "visual."):
            if any(k.startswith(prefix) for k in tensors):
                keep = prefix
                break
        else:
            keep = ""
        # Hugging Face CLIPVisionModel files have no prefix; OpenAI's keep `visual.`.
        chosen = {k: v for k, v in tensors.items() if k.startswith(keep)}
        if keep == "vision_model.":
            chosen = {k[len(keep):]: v for k, v in chosen.items()}
        return chosen
    if key == "text":
        return {k: v for k, v in tensors.items() if not k.startswith(("lm_head.", "cls."))}
    return tensors


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("key", choices=["vision", "text", "whole"], help="the [model.init] key the file is for")
    parser.add_argument("source", help="the downloaded file or Hugging Face repository folder")
    parser.add_argument("output", help="the safetensors file to write")
    parser.add_argument("--keep-dtype", action="store_true", help="keep half-precision tensors as they are")
    args = parser.parse_args()
    tensors = select(args.key, read(args.source))
    if not tensors:
        sys.exit(f"{args.source}: no tensors for the {args.key} tower")
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        if not args.keep_dtype and tensor.is_floating_point():
            tensor = tensor.float()
        out[name] = tensor.contiguous().clone()  # clones: tied weights share storage
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    save_file(out, args.output)
    print(f"{args.output}: {len(out)} tensors for model.init.{args.key} from {args.source}")


if __name__ == "__main__":
    main()
