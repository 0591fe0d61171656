"""Shard streaming: labeled, unlabeled and evaluation pipelines (webdataset, torch DataLoader).

Shards are prep's output (docs/architecture.md, "Shards"): one sample per video, `KEY.json` + all
frames as concatenated JPEGs in `KEY.jpgs`. The streams read and decode only the frames a clip
needs: local shards are read at random offsets (tarread.py; `pipe:`/remote URLs stream through
webdataset's tar reader), the clip's JPEG bytes are sliced out, and only those are decoded.

- `shard_urls(spec)`, `read_manifest(dir)`: sources (sources.py); `data_info(cfg)`, `class_names(cfg)`:
  the prep settings and class names of a run's shards (provenance.py).
- `clip_indices`, `random_clip_start`, `uniform_clip_starts`, `decode_frames`: index math and
  decoding (clips.py). Strides are in *stored* frames (prep caps the fps; the demo data is 15 fps).
- `labeled_loader`, `unlabeled_loader`, `eval_loader`, `video_loader` (pretraining: one view,
  labels ignored) (streams.py) return a `Stream`; the stages
  they are built from live in stages.py (seeds, faults, splits, batching) and samples.py (per sample).

Training streams are infinite: shards are resampled with a seed derived from
(train.seed, rank, worker, start_step, stream), so no two ranks or workers share a shard order and
a run resumed with `start_step` = its step draws fresh samples instead of replaying old ones.
Evaluation reads every video exactly once across ranks (by shard, or by sample index when there are
fewer shards than rank x worker slots; see `eval_loader`).

Normalisation is not done here: batches are uint8; the trainer/evaluator normalises on the device.

Faults: an unreadable shard (missing, truncated, not a tar) or sample (bad JSON, missing member,
undecodable JPEG, label out of range in the labeled stream) is skipped, never stops the stream.
Each is logged (`logging.warning` once per shard per worker, naming the URL and key) and counted:
workers attach their new faults to the next batch and `Stream` pops them, so `stream.stats()` in the
iterating process gives exact counts and the `(url, key, reason)` list for any number of workers
(key "" marks a whole-shard fault). A training stream that sees 1000 faults in a row with no good
sample raises RuntimeError (every shard is broken) instead of spinning forever.
"""

from svformer.data.clips import (
    SampleError,
    clip_index_list,
    clip_indices,
    decode_frames,
    frame_offsets,
    parse_sample,
    random_clip_start,
    uniform_clip_starts,
)
from svformer.data.provenance import class_names, data_info
from svformer.data.sources import read_manifest, shard_urls
from svformer.data.streams import Stream, eval_loader, labeled_loader, unlabeled_loader, video_loader

__all__ = [
    "SampleError",
    "Stream",
    "class_names",
    "clip_index_list",
    "clip_indices",
    "data_info",
    "decode_frames",
    "eval_loader",
    "frame_offsets",
    "labeled_loader",
    "parse_sample",
    "random_clip_start",
    "read_manifest",
    "shard_urls",
    "uniform_clip_starts",
    "unlabeled_loader",
    "video_loader",
]
