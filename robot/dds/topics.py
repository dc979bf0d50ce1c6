"""Topic names. Unitree's are fixed by the firmware; ours are configurable where a driver uses them."""
from __future__ import annotations

LOWSTATE = "rt/lowstate"          # unitree_hg LowState_, published by the robot (500 Hz) / the sim
ARM_SDK = "rt/arm_sdk"            # unitree_hg LowCmd_, arm/waist commands blended over locomotion
LOWCMD = "rt/lowcmd"              # unitree_hg LowCmd_, whole-body debug mode: never published by lara-g1
INSPIRE_CMD = "rt/inspire/cmd"    # unitree_go MotorCmds_, 12 entries: right hand 0-5, left 6-11
INSPIRE_STATE = "rt/inspire/state"  # unitree_go MotorStates_, same order
HEAD_CMD = "lara/head/cmd"        # lara_g1 HeadCmd_ (our custom head mount)
HEAD_STATE = "lara/head/state"    # lara_g1 HeadState_
SIM_CAMERA = "lara/sim/head_camera"  # lara_g1 Image_, rendered by lara-sim
SIM_REQUEST = "lara/sim/request"  # lara_g1 SimRequest_
SIM_REPLY = "lara/sim/reply"      # lara_g1 SimReply_
