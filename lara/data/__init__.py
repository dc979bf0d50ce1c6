"""LeRobot v3.0 datasets.

:mod:`.format` (paths, field names, durable writes), :mod:`.video` (PyAV encode/decode),
:mod:`.lerobot` (the reader), :mod:`.samples` (training samples), :mod:`.stats`,
:mod:`.validate`, :mod:`.synthetic` (a small learnable dataset), and :mod:`.writer`, the writer
that ``lara-teleop record`` and ``lara-robot eval``'s trial recording both use.
"""
