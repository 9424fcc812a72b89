"""The PIL + torchvision side of `arl bench data`: ARL's `clip` transform (RGBA decode,
Resize(S, bicubic), CenterCrop(S), RGB, ToTensor, CLIP Normalize) over the given image files on
one thread; prints {"images_per_s": …} for the median of the passes.

  python pil_images.py SIZE PASSES FILE...
"""

import io
import json
import statistics
import sys
import time

import torch
from PIL import Image
from torchvision import transforms

torch.set_num_threads(1)
size, passes, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
data = [open(f, "rb").read() for f in files]
clip = transforms.Compose([
    transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC),
    transforms.CenterCrop(size),
    lambda image: image.convert("RGB"),
    transforms.ToTensor(),
    transforms.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
])
rates = []
for _ in range(passes):
    start = time.perf_counter()
    for blob in data:
        clip(Image.open(io.BytesIO(blob)).convert("RGBA"))
    rates.append(len(data) / (time.perf_counter() - start))
print(json.dumps({"images_per_s": statistics.median(rates)}))
