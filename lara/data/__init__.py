"""LeRobot v3.0 datasets: reading (:mod:`.lerobot`), training samples (:mod:`.samples`),
statistics (:mod:`.stats`), validation (:mod:`.validate`), the synthetic set (:mod:`.synthetic`).
The writer used by the recorder is :mod:`teleop.dataset_writer`."""
