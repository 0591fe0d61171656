"""Apply a trained model to raw videos: `python cli.py predict` and `svformer.Predictor`.

    predictor.py  `Predictor`: decode a video as prep does (with the checkpoint's prep settings), cut
                  eval's test views, score them; decoding threads overlap the model
    outputs.py    rows as JSON lines / CSV / a table; the pseudo-label and label-next list files
    run.py        one CLI run: gather inputs (paths, a list file), predict, write the files
    label_page.py the label-next page (FILE.html): frame strips from predict's decode, top-2 guesses

A raw video decoded with the settings its model's shards were made with gets the logits `eval`
gives that video's shard (same JPEG bytes, same frames, same views).
"""

from svformer.predict.predictor import Predictor, VideoInput, video_views, view_probabilities
from svformer.predict.run import gather_inputs, predict_videos

__all__ = ["Predictor", "VideoInput", "view_probabilities", "gather_inputs", "predict_videos", "video_views"]
