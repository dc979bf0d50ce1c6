"""LeRobot v3.0 datasets.

:mod:`.format` (paths, field names, durable writes), :mod:`.video` (PyAV encode/decode),
:mod:`.lerobot` (the reader), :mod:`.samples` (training samples), :mod:`.stats`,
:mod:`.validate`, :mod:`.synthetic` (a small learnable dataset). The writer the recorder uses
is :mod:`lara_g1.teleop.dataset_writer`.
"""
