"""Video files of a LeRobot dataset through PyAV: an H.264 encoder and a span decoder.

Frames of an episode are located by time: frame ``i`` of an episode whose span starts at
``from_timestamp`` in its (possibly shared) video file is the frame at
``from_timestamp + i / fps``. The encoder writes exactly that: pts = frame number in a 1/fps
time base, a keyframe at least every ``gop`` frames (so seeking stays cheap), no B-frames.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from lara_g1.lara.data.format import DatasetFormatError

#: Encoders in order of preference. libx264 is H.264, what LeRobot and every player read;
#: mpeg4 (MPEG-4 part 2) ships with every FFmpeg build and is the fallback. AV1
#: ("libsvtav1", LeRobot's own default) is available on request: smaller files, but about
#: 3x the CPU of x264 per 640x480 frame here.
PREFERRED_CODECS = ("libx264", "mpeg4")
#: Name written to info.json ``video.codec`` for each encoder.
CODEC_LABEL = {"libx264": "h264", "mpeg4": "mpeg4", "libsvtav1": "av1"}
#: When the next wanted frame is further ahead than this, seek instead of decoding forward.
RESEEK_GAP_FRAMES = 90


def available_encoder(preferred: str | None = None) -> str:
    """The encoder to use: ``preferred`` if this PyAV build has it, else the first of
    :data:`PREFERRED_CODECS` that it has."""
    names = (preferred,) if preferred else PREFERRED_CODECS
    for name in names:
        try:
            av.Codec(name, "w")
            return name
        except Exception:  # PyAV raises UnknownCodecError / ValueError depending on version
            continue
    raise RuntimeError(f"this PyAV/FFmpeg build has none of the video encoders {list(names)}; "
                       f"install a PyAV wheel with libx264 (pip install --force-reinstall av)")


class VideoEncoder:
    """Streams RGB frames into one mp4 file (yuv420p). ``close()`` finishes the file."""

    def __init__(self, path: Path, width: int, height: int, fps: int, codec: str | None = None,
                 gop: int = 15, crf: int = 23, preset: str = "veryfast"):
        if width % 2 or height % 2:
            raise ValueError(f"video frames must have even width and height for yuv420p, "
                             f"got {width}x{height}")
        self.path = Path(path)
        self.codec = available_encoder(codec)
        self.width, self.height, self.fps = width, height, fps
        self.frames = 0
        self.encode_seconds = 0.0  # wall time spent converting + encoding + muxing
        self._container = av.open(str(self.path), mode="w", format="mp4")
        try:
            stream = self._container.add_stream(self.codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = Fraction(1, fps)
            ctx = stream.codec_context
            ctx.gop_size = gop
            if self.codec == "libx264":
                # zerolatency: no B-frames and no look-ahead, so every frame leaves the encoder
                # at once (little memory, nothing held back when the episode ends).
                stream.options = {"crf": str(crf), "preset": preset, "tune": "zerolatency"}
            elif self.codec == "libsvtav1":
                # SVT-AV1 takes numeric presets (0 slowest .. 13 fastest); x264 names map to 10.
                svt_preset = preset if preset.isdigit() else "10"
                stream.options = {"crf": str(crf), "preset": svt_preset}
            else:
                ctx.max_b_frames = 0
                ctx.bit_rate = int(width * height * fps * 0.6)
        except Exception:
            self._container.close()
            raise
        self._stream = stream

    def encode(self, image: np.ndarray) -> None:
        t0 = time.perf_counter()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        frame.time_base = Fraction(1, self.fps)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1
        self.encode_seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Flush the encoder and write the mp4 index. The file is complete afterwards."""
        t0 = time.perf_counter()
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self.encode_seconds += time.perf_counter() - t0

    def abort(self) -> None:
        """Stop without finishing the file (it is deleted by the caller)."""
        try:  # noqa: SIM105
            self._container.close()
        except Exception:  # the file is being thrown away; a muxer complaint changes nothing
            pass


def _frame_index(frame: av.VideoFrame, from_ts: float, fps: float, path: Path) -> int:
    if frame.time is None:
        raise DatasetFormatError(f"{path}: a decoded frame has no timestamp")
    return int(round((frame.time - from_ts) * fps))


def read_frames(path: Path, from_ts: float, to_ts: float, fps: float,
                indices: list[int] | None = None) -> np.ndarray:
    """Frames ``indices`` (default: all) of the span [from_ts, to_ts) of ``path`` as uint8
    [N, H, W, 3] RGB, in the order given. Seeks to the keyframe before each far-away frame
    (and decodes from the file's start if a seek lands past it, as badly indexed files do)."""
    path = Path(path)
    count = int(round((to_ts - from_ts) * fps))
    wanted = list(range(count)) if indices is None else [int(i) for i in indices]
    bad = [i for i in wanted if not 0 <= i < count]
    if bad:
        raise IndexError(f"frame indices {bad[:5]} outside the episode's {count} frames")
    if not path.is_file():
        raise DatasetFormatError(f"{path}: video file missing")
    targets = sorted(set(wanted))
    found: dict[int, np.ndarray] = {}
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise DatasetFormatError(f"{path}: cannot open video: {exc}") from exc
    with container:
        if not container.streams.video:
            raise DatasetFormatError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        pos = 0  # index into targets of the next frame still wanted
        from_start = False  # set when a seek overshot: decode from the file's start instead
        try:
            while pos < len(targets):
                target = targets[pos]
                seek_ts = 0.0 if from_start else from_ts + target / fps
                container.seek(max(0, int(seek_ts / stream.time_base)), stream=stream,
                               backward=True, any_frame=False)
                progressed = overshot = False
                for frame in container.decode(stream):
                    idx = _frame_index(frame, from_ts, fps, path)
                    if idx < target:
                        continue
                    if idx > target and not progressed:
                        overshot = True  # the seek landed past the keyframe before the target
                        break
                    if idx >= count:
                        break
                    if idx == targets[pos]:
                        found[idx] = frame.to_ndarray(format="rgb24")
                        pos += 1
                        progressed = True
                        if pos == len(targets) or targets[pos] - idx > RESEEK_GAP_FRAMES:
                            break
                    elif idx > targets[pos]:
                        break  # a wanted frame was skipped: not in the file
                if progressed:
                    from_start = False
                elif overshot and not from_start and seek_ts > 0:
                    from_start = True
                elif overshot:  # decoded from the start and still not there: it is missing
                    pos += 1
                    from_start = False
                else:
                    break  # the stream ended before the target
        except av.error.FFmpegError as exc:
            raise DatasetFormatError(f"{path}: video decoding failed: {exc}") from exc
    missing = [t for t in targets if t not in found]
    if missing:
        raise DatasetFormatError(
            f"{path}: frames {missing[:5]}{'...' if len(missing) > 5 else ''} of the span "
            f"[{from_ts:.4f}, {to_ts:.4f}) s are not in the video ({len(missing)} missing)")
    return np.stack([found[i] for i in wanted]) if wanted else np.zeros((0, 0, 0, 3), np.uint8)


@dataclass(frozen=True)
class VideoProbe:
    """What the container says, read from packets without decoding pixels."""

    codec: str
    width: int
    height: int
    frame_times: list[float]  # presentation times (s) of all video packets, sorted


def probe_video(path: Path) -> VideoProbe:
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"{path}: video file missing")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetFormatError(f"{path}: no video stream")
            stream = container.streams.video[0]
            times = [float(p.pts * stream.time_base) for p in container.demux(stream)
                     if p.pts is not None]
            ctx = stream.codec_context
            return VideoProbe(ctx.name, ctx.width, ctx.height, sorted(times))
    except av.error.FFmpegError as exc:
        raise DatasetFormatError(f"{path}: not a readable video: {exc}") from exc
