"""PAT_SPAM_ENGINE as ``pat`` reads it: an unknown engine stops the command with the values it
may take; ``none`` and an rspamd that is not Pat's to start are reported on the banner line
without starting anything; and where an embedded rspamd's files go."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pat.cli import launch_spam_engine
from pat.rspamd_embedded import RspamdSetupError, place
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


def _account(home: Path) -> pwd.struct_passwd:
    """An account that owns nothing but, maybe, ``home``."""
    return pwd.struct_passwd(("pat-test", "x", 54321, 54321, "", str(home), "/bin/false"))


def test_rspamd_files_stay_in_the_data_dir_when_its_account_can_reach_it() -> None:
    # Not under tmp_path: pytest's temporary directories are private to their owner.
    with tempfile.TemporaryDirectory() as name:
        open_dir = Path(name)
        os.chmod(open_dir, 0o755)
        files = place(open_dir / "data", _account(open_dir / "no-home"))
        assert files.root == open_dir.resolve() / "data" / "rspamd"
        assert files.hyperscan == files.root / "hyperscan" and not files.disposable


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another account needs root")
def test_rspamd_files_move_to_its_accounts_home_when_the_data_dir_is_private(
        tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    home = tmp_path / "home"
    home.mkdir()
    account = _account(home)
    os.chown(home, account.pw_uid, account.pw_gid)
    files = place(private / "data", account)
    assert files.disposable and files.root.parent == home and files.hyperscan.parent == home
    assert files == place(private / "data", account)  # the same place at every start

    with pytest.raises(RspamdSetupError, match=r"cannot reach .*set PAT_DATA_DIR"):
        place(private / "data", _account(tmp_path / "no-home"))
