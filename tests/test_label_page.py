"""The label-next page: `predict --label-next K FILE` also writes FILE.html, self-contained, one row per
video with a strip of its decoded frames, the top-2 guesses with confidences, the margin and the path."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from _runs import tiny_config
from click.testing import CliRunner
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

import cli


class PageParser(HTMLParser):
    """The rows of a label-next page: data attributes, the images' src, the two guess cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.tags: list[str] = []
        self.srcs: list[str] = []  # every src/href attribute on the page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.srcs += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "tr" and a.get("class") == "video":
            self.rows.append({"source": a["data-source"], "line": a["data-line"], "images": [], "guesses": []})
        elif tag == "img" and self.rows:
            self.rows[-1]["images"].append(a["src"])
        elif tag == "td" and "guess" in (a.get("class") or "") and "data-name" in a:
            self.rows[-1]["guesses"].append((int(a["data-label"]), a["data-name"], float(a["data-confidence"])))
        elif tag == "td" and a.get("class") == "margin":
            self.rows[-1]["margin"] = float(a["data-margin"])


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def jpeg_of(data_uri: str) -> torch.Tensor:
    """The image of a `data:image/jpeg;base64,...` URI, uint8 (3, H, W); fails unless it is a JPEG."""
    prefix = "data:image/jpeg;base64,"
    assert data_uri.startswith(prefix)
    blob = base64.b64decode(data_uri[len(prefix) :], validate=True)
    assert blob[:2] == b"\xff\xd8"  # SOI: a JPEG, not just any image
    return decode_jpeg(torch.frombuffer(bytearray(blob), dtype=torch.uint8), mode=ImageReadMode.RGB)


@pytest.fixture(scope="module")
def trained_run(demo_shards, tmp_path_factory) -> Path:
    """A tiny run trained for 2 steps (1 supervised, 1 SSL)."""
    from svformer.config import load_config
    from svformer.train import train

    tmp = tmp_path_factory.mktemp("label_page_run")
    config = tiny_config(
        demo_shards,
        tmp / "run",
        tmp / "c.yaml",
        train={"max_steps": 2, "warmup_steps": 1, "checkpoint_every": 2, "val_every": 0},
    )
    train(load_config(config))
    return tmp / "run"


def test_label_next_page_holds_k_rows_with_their_frames_and_guesses(trained_run, demo_shards, demo_videos, tmp_path):
    from svformer.predict.label_page import STRIP_FRAMES, THUMB_HEIGHT
    from svformer.video.decode import DecodeSettings, decode_video

    k = 5
    rows_path, next_path = tmp_path / "rows.jsonl", tmp_path / "next.txt"
    args = ["--ckpt", str(trained_run), "--list", str(demo_shards / "lists" / "unlabeled.txt")]
    args += ["--data-root", str(demo_videos), "--views", "1x1", "--workers", "2", "--batch-size", "3"]
    args += ["--out", str(rows_path), "--label-next", str(k), str(next_path)]
    result = CliRunner().invoke(cli.cli, ["predict", *args])
    assert result.exit_code == 0, result.output
    page_path = tmp_path / "next.txt.html"
    assert f"(page: {page_path})" in result.output

    rows = {(r["source"], r["line"]): r for r in map(json.loads, rows_path.read_text().splitlines())}
    listed = [line.split()[0] for line in next_path.read_text().splitlines() if not line.startswith("#")]
    page = parse_page(page_path)
    assert [r["source"] for r in page.rows] == listed and len(listed) == k  # the list's videos, in its order

    # self-contained: no script, stylesheet link, frame or remote reference; every image inline
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    assert page.srcs and all(src.startswith("data:image/jpeg;base64,") for src in page.srcs)
    assert "http://" not in page_path.read_text() and "https://" not in page_path.read_text()

    for shown in page.rows:
        row = rows[(shown["source"], int(shown["line"]))]
        assert shown["guesses"] == [tuple(entry) for entry in row["topk"][:2]]  # names and confidences as written
        assert shown["margin"] == row["margin"] == pytest.approx(row["topk"][0][2] - row["topk"][1][2])
        # the strip: N frames of this video as predict decoded it (prep's decoding, the run's settings)
        frames = decode_video(str(demo_videos / shown["source"]), DecodeSettings(short_side=64, fps=15)).frames
        assert len(shown["images"]) == min(STRIP_FRAMES, len(frames))
        first_index = int(0.5 * len(frames) / min(STRIP_FRAMES, len(frames)))  # the strip's first frame
        first = decode_jpeg(torch.frombuffer(bytearray(frames[first_index]), dtype=torch.uint8))
        _, h, w = first.shape
        size = (h, w) if h <= THUMB_HEIGHT else (THUMB_HEIGHT, round(w * THUMB_HEIGHT / h))
        images = [jpeg_of(src) for src in shown["images"]]
        assert all(tuple(image.shape[1:]) == size for image in images)
        if size == (h, w):  # same pixels up to the thumbnail's JPEG re-encoding
            assert (images[0].float() - first.float()).abs().mean() < 6


def _jpeg(height: int, width: int, value: int) -> bytes:
    return encode_jpeg(torch.full((3, height, width), value, dtype=torch.uint8)).numpy().tobytes()


def test_strips_are_kept_only_for_videos_label_next_can_pick(tmp_path):
    from svformer.predict import VideoInput
    from svformer.predict.label_page import THUMB_HEIGHT, FrameStrips, frame_strip, write_label_page
    from svformer.predict.outputs import label_next

    assert [len(s) for s in (frame_strip([_jpeg(200, 100, 9)] * 3), frame_strip([_jpeg(40, 60, 9)] * 30))] == [3, 6]
    tall = jpeg_of("data:image/jpeg;base64," + base64.b64encode(frame_strip([_jpeg(200, 100, 9)])[0]).decode())
    assert tuple(tall.shape[1:]) == (THUMB_HEIGHT, 48)  # scaled to the thumbnail height, aspect kept

    k, strips, rows = 3, FrameStrips(3), []
    for i in range(40):  # 2 classes; margins repeat so that ties must keep input order
        source = f'clip <{i}> & "co".mp4'
        row = {"source": source, "line": i + 1, "label": i % 2, "name": f"class {i % 2}", "error": None}
        row.update(margin=(i * 7 % 10) / 20, confidence=0.6, topk=[[i % 2, f"c{i % 2}", 0.6], [1 - i % 2, "x", 0.3]])
        if i == 5:
            row.update(error="broken", label=None, margin=None, topk=[])  # not decoded: no strip taken
        else:
            strips.take(VideoInput(source, source, i + 1), [_jpeg(48, 64, i)] * 8)
        strips.offer(row)
        rows.append(row)
        assert strips.held() <= 2 * k  # the k smallest margins of each class, nothing else
    picked = label_next(rows, 4)
    assert all(len(strips.strip(row)) == 6 for row in picked)

    page = tmp_path / "p.html"
    write_label_page(page, picked, strips, "a <model>", tmp_path / "next.txt")
    parsed = parse_page(page)
    assert [r["source"] for r in parsed.rows] == [r["source"] for r in picked]  # escaped and read back
    assert all(len(r["images"]) == 6 for r in parsed.rows)
    assert "a &lt;model&gt;" in page.read_text()
