"""The label-next page: `predict --label-next K FILE` also writes `FILE.html`, for the person who labels.

The page is one self-contained file: inline CSS, every thumbnail an inline base64 JPEG, no script,
nothing fetched (open it from disk, mail it, copy it to a laptop). One row per video to label next, in
the list's order: a strip of its frames, the two top classes with their confidences, the margin
between them, and the path as the list gives it.

The strips come from the JPEG frames predict decodes anyway (`FrameStrips.take` runs in the decoding
threads), so there is no second ffmpeg run. Only the videos that `outputs.label_next` could still pick
keep theirs: the k smallest margins of each predicted class, which bounds the memory on a large
unlabeled set.
"""

from __future__ import annotations

import base64
import heapq
import html
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

from svformer.errors import UserError
from svformer.files import write_atomic
from svformer.predict.predictor import VideoInput

log = logging.getLogger(__name__)

STRIP_FRAMES = 6
"""Frames per strip, spread evenly over the video."""
THUMB_HEIGHT = 96
"""Thumbnail height in pixels (smaller frames keep theirs: never upscaled)."""
THUMB_QUALITY = 80
"""JPEG quality of the thumbnails."""


def page_path(list_path: str | Path) -> Path:
    """Where the page of a label-next list goes: the list's path with `.html` appended."""
    return Path(f"{list_path}.html")


def frame_strip(
    frames: Sequence[bytes], count: int = STRIP_FRAMES, height: int = THUMB_HEIGHT, quality: int = THUMB_QUALITY
) -> list[bytes]:
    """`count` of a video's JPEG frames, evenly spread, re-encoded as JPEG thumbnails at most `height` high.

    Fewer frames than `count` give one thumbnail each. Raises RuntimeError on an undecodable frame.
    """
    n = len(frames)
    m = min(count, n)
    picked = [int((i + 0.5) * n / m) for i in range(m)]  # the middle frame of each of m equal stretches
    images = decode_jpeg(
        [torch.frombuffer(bytearray(frames[i]), dtype=torch.uint8) for i in picked], mode=ImageReadMode.RGB
    )
    out = []
    for image in images:
        _, h, w = image.shape
        if h > height:
            size = (height, max(1, round(w * height / h)))
            image = torch.nn.functional.interpolate(
                image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False
            )[0]
            image = image.round().clamp(0, 255).to(torch.uint8)
        out.append(encode_jpeg(image, quality=quality).numpy().tobytes())
    return out


def _key(source: str, line: int | None) -> tuple[str, int | None]:
    return source, line


class FrameStrips:
    """The frame strips of the videos `outputs.label_next(rows, k)` can still pick, gathered during predict.

    `take(video, frames)` (decoding threads) makes a video's strip; `offer(row)` (the model's thread,
    every row once, in input order) keeps it when the row is among the k smallest margins of its
    predicted class, ties in input order as label_next breaks them, and drops what that pushes out.
    A strip waits between the two for at most predict's look-ahead window.
    """

    def __init__(self, k: int) -> None:
        """Keep the strips of at most k videos per predicted class."""
        self.k = k
        self._lock = threading.Lock()
        self._strips: dict[tuple[str, int | None], list[bytes]] = {}
        self._waiting: Counter = Counter()  # strips taken, their row not offered yet (a path may repeat)
        self._held: Counter = Counter()  # entries in the per-class heaps
        self._heaps: dict[int, list[tuple[float, int, tuple[str, int | None]]]] = defaultdict(list)
        self._offered = 0

    def take(self, video: VideoInput, frames: Sequence[bytes]) -> None:
        """Make and hold the strip of a video predict decoded (called for every decoded video)."""
        try:
            strip = frame_strip(frames)
        except RuntimeError as err:  # the page shows the row without frames; the prediction stands
            log.warning("%s: no frame strip for the label-next page (%s)", video.source, str(err).splitlines()[-1])
            strip = []
        key = _key(video.source, video.line)
        with self._lock:
            self._strips[key] = strip
            self._waiting[key] += 1

    def offer(self, row: dict) -> None:
        """Account one predicted row: keep its strip while it can still be picked."""
        if row["error"] is not None:  # no strip was taken for it
            return
        key = _key(row["source"], row["line"])
        with self._lock:
            order = self._offered
            self._offered += 1
            heap = self._heaps[row["label"]]
            # A max-heap on (margin, input order): its top is the first to go when more than k are held.
            heapq.heappush(heap, (-row["margin"], -order, key))
            self._waiting[key] -= 1
            self._held[key] += 1
            if len(heap) > self.k:
                _, _, dropped = heapq.heappop(heap)
                self._held[dropped] -= 1
                self._release(dropped)
            self._release(key)

    def strip(self, row: dict) -> list[bytes]:
        """The thumbnails (JPEG bytes) of a row's video; empty when it has none."""
        with self._lock:
            return list(self._strips.get(_key(row["source"], row["line"]), []))

    def held(self) -> int:
        """How many strips are held now (for tests and logs)."""
        with self._lock:
            return len(self._strips)

    def _release(self, key: tuple[str, int | None]) -> None:
        if self._waiting[key] <= 0 and self._held[key] <= 0:
            self._strips.pop(key, None)


STYLE = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px; color: #1d2330;
  background: #f6f7f9; }
h1 { font-size: 20px; margin: 0 0 4px; }
p.about { margin: 0 0 16px; color: #555c6a; max-width: 70em; }
table { border-collapse: collapse; background: #fff; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
th { text-align: left; font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
  color: #555c6a; padding: 8px 12px; border-bottom: 2px solid #dde1e7; }
td { padding: 8px 12px; border-bottom: 1px solid #e6e9ee; vertical-align: middle; }
tr.video:nth-child(even) td { background: #fafbfc; }
td.rank { color: #8a909c; text-align: right; }
td.frames { white-space: nowrap; }
td.frames img { height: 64px; width: auto; margin-right: 3px; border-radius: 2px; vertical-align: middle; }
td.guess { min-width: 9em; }
.name { display: block; font-weight: 600; }
.second .name { font-weight: 400; color: #3c4350; }
.conf { font-variant-numeric: tabular-nums; color: #555c6a; }
.bar { height: 5px; background: #e6e9ee; border-radius: 3px; margin-top: 3px; width: 8em; }
.bar span { display: block; height: 100%; border-radius: 3px; background: #3d7be0; }
.second .bar span { background: #9aa3b2; }
td.margin { font-variant-numeric: tabular-nums; font-weight: 600; }
td.path code { font-size: 12px; overflow-wrap: break-word; }
td.path .line { color: #8a909c; font-size: 12px; }
""".strip()


def write_label_page(
    path: str | Path, picked: Sequence[dict], strips: FrameStrips, description: str, list_path: str | Path
) -> Path:
    """Write the page of the picked rows (in their order) atomically; returns its path.

    Args:
        path: the .html file to write.
        picked: the rows `outputs.label_next` chose, each with at least two `topk` entries or one.
        strips: the strips gathered during the run.
        description: which weights predicted (the list's header says the same).
        list_path: the list file the page goes with (named on the page).
    Raises:
        UserError: the file cannot be written.
    """
    body = "\n".join(_row(i + 1, row, strips.strip(row)) for i, row in enumerate(picked))
    esc = html.escape
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{len(picked)} videos to label next</title>
<style>
{STYLE}
</style>
</head>
<body>
<h1>{len(picked)} videos to label next</h1>
<p class="about">The least certain predictions of {esc(description)} (smallest margin between the two top
probabilities), spread over the predicted classes. <code>{esc(str(list_path))}</code> lists the same videos
with the model's guess as their label: check each, correct it, then add the lines to the labeled list.</p>
<table>
<thead><tr><th>#</th><th>frames</th><th>guess</th><th>runner-up</th><th>margin</th><th>path</th></tr></thead>
<tbody>
{body}
</tbody>
</table>
</body>
</html>
"""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, page)
    except OSError as err:
        raise UserError(f"could not write {path} ({err.strerror or err})") from None
    return path


def _row(rank: int, row: dict, strip: Sequence[bytes]) -> str:
    esc = html.escape
    images = "".join(
        f'<img src="data:image/jpeg;base64,{base64.b64encode(jpeg).decode("ascii")}" alt="frame {i + 1}">'
        for i, jpeg in enumerate(strip)
    )
    guesses = [_guess(entry, "first" if i == 0 else "second") for i, entry in enumerate(row["topk"][:2])]
    guesses += ['<td class="guess second"></td>'] * (2 - len(guesses))
    line_no = "" if row["line"] is None else str(row["line"])
    line = f'<br><span class="line">list line {line_no}</span>' if line_no else ""
    return (
        f'<tr class="video" data-source="{esc(row["source"])}" data-line="{line_no}">'
        f'<td class="rank">{rank}</td><td class="frames">{images or "(no frames)"}</td>{"".join(guesses)}'
        f'<td class="margin" data-margin="{row["margin"]!r}">{row["margin"]:.3f}</td>'
        f'<td class="path"><code>{esc(row["source"])}</code>{line}</td></tr>'
    )


def _guess(entry: Sequence, which: str) -> str:
    label, name, probability = entry
    esc = html.escape
    return (
        f'<td class="guess {which}" data-label="{label}" data-name="{esc(str(name))}" '
        f'data-confidence="{probability!r}">'
        f'<span class="name">{esc(str(name))}</span> <span class="conf">{probability:.1%}</span>'
        f'<div class="bar"><span style="width:{probability * 100:.1f}%"></span></div></td>'
    )
