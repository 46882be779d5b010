"""PAT_SPAM_ENGINE as ``pat`` reads it: an unknown engine stops the command with the values it
may take; ``none`` and an rspamd that is not Pat's to start are reported on the banner line
without starting anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from pat.cli import launch_spam_engine
from pat.settings import Settings


def test_an_unknown_engine_is_refused_at_start_with_the_values_it_may_take() -> None:
    done = subprocess.run([sys.executable, "-m", "pat", "version"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PAT_SPAM_ENGINE": "bogus"})
    assert done.returncode == 2
    assert "spam_engine" in done.stderr
    assert "'rspamd', 'spamassassin' or 'none'" in done.stderr
    assert "Traceback" not in done.stderr


def test_engine_none_starts_nothing_and_says_the_check_is_off(tmp_path: Path) -> None:
    started = launch_spam_engine(Settings(data_dir=tmp_path, spam_engine="none"))
    assert started.process is None and not started.problem
    assert started.banner_line() == "  Spam check   off (PAT_SPAM_ENGINE=none)\n"


def test_an_rspamd_of_ones_own_that_does_not_answer_is_named(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: nothing answers
        started = launch_spam_engine(Settings(data_dir=tmp_path, rspamd_port=port,
                                              rspamd_embedded=False))
    assert started.process is None
    assert started.problem == f"no rspamd answers at 127.0.0.1:{port} (PAT_RSPAMD_HOST/PORT)"
    assert started.banner_line() == (f"  Spam check   unavailable: rspamd 127.0.0.1:{port} is "
                                     "not running\n")
    assert not (tmp_path / "rspamd").exists()  # nothing written for an rspamd not Pat's
