"""lara-robot's command line without a robot: refusals with clear messages, the keyboard e-stop
on a real pseudo-terminal, and the operator's y/n answers."""
from __future__ import annotations

import io
import os
import termios
import time

import pytest

from lara_g1.robot.cli import main
from lara_g1.robot.keyboard import KeyboardEStop, ask_yes_no
from lara_g1.robot.safety import EStop, EStopSource
from tests.helpers.serve import free_port


def test_unknown_control_config_is_named(capsys):
    assert main(["run", "--task", "pour", "--config", "nonexistent", "--dashboard", "off"]) == 2
    assert "no control config named 'nonexistent'" in capsys.readouterr().err


def test_unsafe_control_config_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("safety:\n  ramp_in_s: 0.1\n")
    assert main(["run", "--task", "pour", "--config", str(bad), "--dashboard", "off"]) == 2
    assert f"{bad}: safety.ramp_in_s: must be >= 1.0, got 0.1" in capsys.readouterr().err


def test_unreachable_server_is_a_clear_error(capsys):
    address = f"tcp://127.0.0.1:{free_port()}"
    assert main(["run", "--task", "pour", "--server", address, "--dashboard", "off"]) == 1
    assert f"lara-serve does not answer at {address}" in capsys.readouterr().err


def test_sim_running_needs_sim(capsys):
    assert main(["run", "--task", "pour", "--sim-running"]) == 2
    assert "--sim-running needs --sim" in capsys.readouterr().err


def test_unknown_task_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--task", "dance"])
    assert "invalid choice: 'dance'" in capsys.readouterr().err


@pytest.mark.parametrize("key", [b" ", b"e", b"\x1b"])
def test_keyboard_estop_on_a_terminal_and_terminal_restored(key):
    master, slave = os.openpty()
    stream = os.fdopen(slave, "r")
    before = termios.tcgetattr(slave)
    estop = EStop()
    try:
        with KeyboardEStop(estop, stream) as kb:
            assert kb.active
            assert termios.tcgetattr(slave)[3] & termios.ICANON == 0      # cbreak: keys without Enter
            os.write(master, b"x")                                        # other keys do nothing
            time.sleep(0.3)
            assert not estop.triggered
            os.write(master, key)
            deadline = time.monotonic() + 5
            while not estop.triggered and time.monotonic() < deadline:
                time.sleep(0.01)
        assert estop.triggered and estop.source is EStopSource.KEYBOARD
        assert termios.tcgetattr(slave) == before
    finally:
        stream.close()
        os.close(master)


def test_keyboard_estop_is_inactive_without_a_terminal():
    with KeyboardEStop(EStop(), io.StringIO()) as kb:
        assert not kb.active


def test_operator_answers():
    out = io.StringIO()
    assert ask_yes_no("ok?", io.StringIO("maybe\nY\n"), out) is True
    assert "please answer y or n" in out.getvalue()
    assert ask_yes_no("ok?", io.StringIO("no\n"), io.StringIO()) is False
    with pytest.raises(EOFError):
        ask_yes_no("ok?", io.StringIO(""), io.StringIO())


def test_config_without_rates_for_every_joint_group_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("safety:\n  max_velocity: {left_arm: 1.0}\n")
    assert main(["run", "--task", "pour", "--config", str(bad), "--dashboard", "off"]) == 2
    assert "missing ['head', 'left_hand', 'right_arm', 'right_hand']" in capsys.readouterr().err


def test_operator_scored_eval_needs_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["eval", "--task", "pour", "--trials", "3", "--dashboard", "off"]) == 2
    assert "stdin is not a terminal" in capsys.readouterr().err
    assert main(["eval", "--task", "pour", "--trials", "0", "--sim"]) == 2
    assert "--trials must be >= 1" in capsys.readouterr().err
