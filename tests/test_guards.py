"""Stops on signals (stn_jax.guards.stop_requests): the first asks the loop to stop, the second stops."""

import os
import signal
import time

import helpers
import pytest

from stn_jax import guards


def _send(signum):
  os.kill(os.getpid(), signum)
  time.sleep(0.01)  # Python runs the handler at the next bytecode boundary of the main thread


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_is_a_request_the_second_stops_at_once_with_its_own_code(signum):
  with helpers.default_stop_signals():
    before = signal.getsignal(signum)
    with guards.stop_requests() as requested:
      _send(signum)
      assert requested == [signum]
      with pytest.raises(guards.Interrupted, match="received again: stopped at once") as stopped:
        _send(signum)
    assert stopped.value.signum == signum  # main.py exits with 128 + signum (143 for SIGTERM, not 130)
    assert signal.getsignal(signum) is before  # the previous handler is back


def test_a_signal_the_launcher_ignored_stays_ignored_and_the_other_still_stops():
  with helpers.default_stop_signals():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a script's `cmd &` does to cmd
    with guards.stop_requests() as requested:
      assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
      _send(signal.SIGINT)
      assert requested == []
      _send(signal.SIGTERM)
      assert requested == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
