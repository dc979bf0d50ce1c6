"""The G1 runtime: DDS drivers, hands, head, cameras, safety, control loop, simulated G1, evaluation."""
