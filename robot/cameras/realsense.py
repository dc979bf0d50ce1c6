"""The Intel RealSense D455 colour stream through ``pyrealsense2`` (the ``realsense`` extra).

Live: serial number, resolution and fps from config (default 640x480 at 30). From a file: a
``.db3``/``.bag`` recording played back through the same pipeline (``enable_device_from_file``)
at its recorded resolution, in real time or (``realtime: false``) every frame in order; that is
also how the driver is exercised without a D455 (tests/robot/test_cameras.py records one with
``rs.software_device`` + ``rs.recorder``).
"""
from __future__ import annotations

import time

import numpy as np

from lara_g1.robot.cameras.base import Camera, CameraError, Frame


def import_pyrealsense2():
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise ImportError("the D455 needs pyrealsense2: pip install 'lara-g1[realsense]' "
                          "(and the system's libusb-1.0)") from exc
    return rs


class RealSenseCamera(Camera):
    def __init__(self, config: dict | None = None):
        cfg = dict(config or {})
        self.serial = cfg.get("serial")
        self.width = int(cfg.get("width", 640))
        self.height = int(cfg.get("height", 480))
        self.fps = int(cfg.get("fps", 30))
        self.recording = cfg.get("recording")      # path of a .db3/.bag to play instead of a device
        self.repeat = bool(cfg.get("repeat", False))
        self.realtime = bool(cfg.get("realtime", True))  # recordings: False plays every frame in order
        self._pipeline = None
        self._playback = None
        self._last_number = -1

    def connect(self) -> None:
        rs = import_pyrealsense2()
        if not self.recording and len(rs.context().query_devices()) == 0:
            # at once, instead of the pipeline's ~15 s wait for a device that is not there
            raise CameraError("no RealSense camera is connected (rs-enumerate-devices lists none): plug the "
                              "D455 into a USB 3 port")
        config = rs.config()
        if self.recording:
            config.enable_device_from_file(str(self.recording), repeat_playback=self.repeat)
        elif self.serial:
            config.enable_device(str(self.serial))
        if self.recording:  # whatever resolution and rate were recorded (0 = any), as RGB
            config.enable_stream(rs.stream.color, 0, 0, rs.format.rgb8, 0)
        else:
            config.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        pipeline = rs.pipeline()
        self._playback = None
        try:
            if self.recording:
                # The playback's pace is set on the resolved device BEFORE the pipeline starts:
                # set after start, a playback that starts in real time drops every frame it
                # plays while this process is not scheduled (seen under load in CI).
                resolved = config.resolve(rs.pipeline_wrapper(pipeline))
                self._playback = resolved.get_device().as_playback()
                self._playback.set_real_time(self.realtime)
            pipeline.start(config)
        except RuntimeError as exc:
            self._playback = None
            source = self.recording or f"D455 {self.serial or '(first found)'}"
            raise CameraError(f"cannot start {source} at {self.width}x{self.height}@{self.fps}: {exc}") from exc
        self._pipeline = pipeline

    def read(self, timeout_s: float = 1.0) -> Frame:
        if self._pipeline is None:
            raise CameraError("RealSenseCamera.read before connect()")
        try:
            frames = self._pipeline.wait_for_frames(int(timeout_s * 1000))
        except RuntimeError as exc:
            raise CameraError(f"no frame from the RealSense within {timeout_s} s: {exc}") from exc
        color = frames.get_color_frame()
        if not color:
            raise CameraError("RealSense frameset without a colour frame")
        image = np.asanyarray(color.get_data()).copy()
        if not self.recording and image.shape != (self.height, self.width, 3):
            raise CameraError(f"RealSense frame {image.shape}, expected {(self.height, self.width, 3)}")
        self._last_number = int(color.get_frame_number())
        return Frame(image=image, stamp=time.monotonic(), index=self._last_number)

    def info(self) -> dict:
        """Serial, model, the colour stream's size and rate, and the exposure mode, as the device says."""
        out: dict = {"serial": self.serial, "width": self.width, "height": self.height, "fps": self.fps}
        if self.recording:
            out["recording"] = str(self.recording)
        if self._pipeline is None:
            return out
        rs = import_pyrealsense2()
        try:
            profile = self._pipeline.get_active_profile()
            device = profile.get_device()
            for key, field in (("serial", rs.camera_info.serial_number), ("model", rs.camera_info.name),
                               ("firmware", rs.camera_info.firmware_version)):
                if device.supports(field):
                    out[key] = device.get_info(field)
            video = profile.get_stream(rs.stream.color).as_video_stream_profile()
            out.update(width=int(video.width()), height=int(video.height()), fps=int(video.fps()))
            sensor = device.first_color_sensor()
            if sensor.supports(rs.option.enable_auto_exposure):
                auto = bool(sensor.get_option(rs.option.enable_auto_exposure))
                out["exposure"] = "auto" if auto else "manual"
                if not auto and sensor.supports(rs.option.exposure):
                    out["exposure_us"] = float(sensor.get_option(rs.option.exposure))
        except (RuntimeError, AttributeError) as exc:   # a playback or an older device may lack some
            out["info_error"] = str(exc)
        return out

    def disconnect(self) -> None:
        if self._pipeline is not None:
            if self._playback is not None:
                # librealsense can abort or hang stopping a non-real-time playback (its issues
                # #3126, #8625); switching back to real time first avoids it.
                self._playback.set_real_time(True)
                self._playback = None
            self._pipeline.stop()
            self._pipeline = None
