"""Video decoding, shared by prep (videos -> shards) and predict (a raw video -> a prediction).

Modules (each one job):
    ffmpeg_bin  find the ffmpeg binary (imageio-ffmpeg's bundled one, else the system's)
    jpeg        split an MJPEG byte stream into JPEG frames; read a JPEG's size
    decode      probe a video (PyAV) and decode it with one ffmpeg process into JPEG frames
"""
