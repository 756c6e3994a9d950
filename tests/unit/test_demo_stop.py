"""The demo never leaves its worker or receiver behind, even on a second Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from streams.tools.demo import stop_children

# A child that ignores SIGTERM, as a worker busy stopping would for a while.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
POLITE = "import time; time.sleep(60)"


def spawn(code: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(0.3)  # let it install its handler
    return proc


def test_children_get_sigterm_then_sigkill_after_the_grace_time() -> None:
    polite, stubborn = spawn(POLITE), spawn(STUBBORN)
    started = time.monotonic()
    stop_children([polite, stubborn], grace_s=1.0)
    assert polite.returncode == -signal.SIGTERM
    assert stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_an_interrupt_while_waiting_kills_every_child_and_is_reraised() -> None:
    stubborn, other = spawn(STUBBORN), spawn(STUBBORN)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            stop_children([stubborn, other], grace_s=30.0)
    finally:
        timer.cancel()
    assert stubborn.poll() == -signal.SIGKILL
    assert other.poll() == -signal.SIGKILL
    assert time.monotonic() - started < 10
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
