#!/usr/bin/env python3
"""A supervised yardstick for zero-shot retrieval on the synthetic benchmark.

Trains a vision transformer of the tiny preset's shape (32 px, 8-px patches, width 64, 3 blocks,
4 heads) directly on the pretraining split's CheXpert labels, then scores every (image, report)
pair of the test and validation splits by the log-likelihood of the report's exact labels under
the image's predicted ones: a text side that cannot err. Prints the held-out label AUC and R@1
both ways (ties broken at random, as expected hits), to set the demo's zero-shot R@1 against.

Usage: .venv/bin/python scripts/label-yardstick.py runs/demo [--steps 3000]
"""

import argparse
import io
from pathlib import Path

import numpy as np
import pyarrow.ipc as ipc
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

SIZE, PATCH, WIDTH, LAYERS, HEADS = 32, 8, 64, 3, 4


def split(root: Path, name: str):
    """Images (N, 1, 32, 32) in [0, 1] and positive CheXpert labels (N, 14) of one split."""
    images, labels = [], []
    for shard in sorted((root / name).glob("*.arrow")):
        table = ipc.open_file(shard).read_all()
        for png in table.column("image").to_pylist():
            grey = Image.open(io.BytesIO(png)).convert("L").resize((SIZE, SIZE), Image.BICUBIC)
            images.append(np.asarray(grey, dtype=np.float32) / 255.0)
        labels.extend(table.column("chexpert").to_pylist())
    x = torch.tensor(np.stack(images))[:, None]
    y = torch.tensor((np.array(labels) == 1).astype(np.float32))
    return x, y


class Vit(nn.Module):
    """Patch convolution, class token, pre-norm transformer, linear label head."""

    def __init__(self, labels: int):
        super().__init__()
        tokens = (SIZE // PATCH) ** 2 + 1
        self.patches = nn.Conv2d(1, WIDTH, PATCH, PATCH)
        self.cls = nn.Parameter(torch.randn(1, 1, WIDTH) * 0.02)
        self.positions = nn.Parameter(torch.randn(1, tokens, WIDTH) * 0.02)
        block = nn.TransformerEncoderLayer(
            WIDTH, HEADS, 4 * WIDTH, 0.0, batch_first=True, norm_first=True, activation="gelu"
        )
        self.blocks = nn.TransformerEncoder(block, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, labels)

    def forward(self, x):  # (B, 1, S, S) -> (B, labels)
        x = self.patches(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.positions
        return self.head(self.norm(self.blocks(x))[:, 0])


def auc(y, p):
    """Mean ROC AUC over the labels that have both classes."""
    scores = []
    for c in range(y.shape[1]):
        pos, neg = p[y[:, c] == 1, c], p[y[:, c] == 0, c]
        if len(pos) and len(neg):
            scores.append(((pos[:, None] > neg[None]).float().mean()
                           + 0.5 * (pos[:, None] == neg[None]).float().mean()).item())
    return float(np.mean(scores))


def expected_hits(scores):
    """Expected R@1 hits of rows against their diagonal, ties broken at random."""
    hits = 0.0
    for i, row in enumerate(scores):
        if (row > row[i]).sum() == 0:
            hits += 1.0 / (row == row[i]).sum().item()
    return hits


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-4)
    args = parser.parse_args()
    torch.manual_seed(0)
    root = args.run_dir / "synth" / "pretrain"
    x, y = split(root, "train")
    mean, std = x.mean(), x.std()
    model = Vit(y.shape[1])
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    order = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        batch = torch.randint(0, len(x), (args.batch,), generator=order)
        loss = F.binary_cross_entropy_with_logits(model((x[batch] - mean) / std), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    print(f"trained on {len(x)} images for {args.steps} steps of {args.batch}")
    for name in ["test", "val"]:
        xs, ys = split(root, name)
        with torch.no_grad():
            logits = model((xs - mean) / std)
        # scores[report j, image i]: log-likelihood of report j's labels under image i.
        scores = ys @ F.logsigmoid(logits).T + (1 - ys) @ F.logsigmoid(-logits).T
        n = len(ys)
        print(
            f"{name}: {n} pairs, label AUC {auc(ys, logits):.3f}, R@1 hits T2I "
            f"{expected_hits(scores):.1f}, I2T {expected_hits(scores.T):.1f} (chance 1)"
        )


if __name__ == "__main__":
    main()
