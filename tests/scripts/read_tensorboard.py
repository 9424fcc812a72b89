"""Reads a TensorBoard log folder with TensorBoard's own reader (EventAccumulator, which
checks the record CRCs and drops events orphaned by a restart) and prints one JSON object:
{"scalars": {tag: [[step, value], ...]}, "images": {tag: [[step, width, height, png_bytes]]}}.

Usage: python read_tensorboard.py LOG_DIR
"""

import json
import sys

from tensorboard.backend.event_processing import event_accumulator


def main():
    acc = event_accumulator.EventAccumulator(
        sys.argv[1],
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0},
        purge_orphaned_data=True,
    )
    acc.Reload()
    tags = acc.Tags()
    print(json.dumps({
        "scalars": {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]},
        "images": {
            t: [[e.step, e.width, e.height, len(e.encoded_image_string)] for e in acc.Images(t)]
            for t in tags["images"]
        },
    }))


if __name__ == "__main__":
    main()
