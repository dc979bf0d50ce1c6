"""DDS for the G1: Unitree's message types, their CRC, topic names and a per-domain participant."""
