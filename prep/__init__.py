"""List files -> frame-decoded tar shards, plus the synthetic demo dataset.

Modules (each one job):
    ffmpeg_bin      find the ffmpeg binary (imageio-ffmpeg's bundled one, else the system's)
    lists           list-file parsing/validation, sample keys, the stratified split
    jpeg            split an MJPEG byte stream into JPEG frames; read a JPEG's size
    decode          probe a video (PyAV) and decode it with one ffmpeg process into JPEG frames
    tarfmt          deterministic tar members and one shard file (temp name, rename, sidecar)
    manifest        manifest.json / failures.tsv, merging the manifests of `--part` runs
    shards          the prep run: parallel decode, list-order writing, rollover, resume, parts
    synth           the synthetic demo action dataset (classes that need time to tell apart)
    inspect_shards  what a shard holds, and `--verify`
"""
