"""report_files: the report reaches the disk whole, with its permissions, and nothing else is touched."""

import os
import stat

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.novaha.recovery.plugins.action import report_files as rf


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writes_the_files_and_their_directory_with_the_permissions_asked(tmp_path):
    directory = tmp_path / "reports" / "node-28-run"
    changed, where, written, removed = rf.write_files(
        str(directory), {"report.json": '{"outcome": "recovered"}\n', "report.md": "RECOVERED"}, 0o640, 0o750, [], False
    )
    assert changed and where == str(directory) and removed == []
    assert sorted(written) == [str(directory / "report.json"), str(directory / "report.md")]
    assert (directory / "report.json").read_text() == '{"outcome": "recovered"}\n'
    assert mode_of(directory / "report.md") == 0o640
    assert mode_of(directory) & 0o027 == 0  # nothing for others, never group write
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_the_same_content_again_changes_nothing_and_keeps_the_file(tmp_path):
    rf.write_files(str(tmp_path), {"report.md": "RECOVERED"}, 0o640, 0o750, [], False)
    inode = os.stat(tmp_path / "report.md").st_ino
    changed, _where, written, _removed = rf.write_files(str(tmp_path), {"report.md": "RECOVERED"}, 0o640, 0o750, [], False)
    assert not changed and written == []
    assert os.stat(tmp_path / "report.md").st_ino == inode


def test_a_new_content_replaces_the_old_one(tmp_path):
    rf.write_files(str(tmp_path), {"report.md": "IN PROGRESS"}, 0o640, 0o750, [], False)
    changed, _where, written, _removed = rf.write_files(str(tmp_path), {"report.md": "RECOVERED"}, 0o640, 0o750, [], False)
    assert changed and written == [str(tmp_path / "report.md")]
    assert (tmp_path / "report.md").read_text() == "RECOVERED"


def test_removes_the_token_file_and_ignores_one_already_gone(tmp_path):
    token = tmp_path / "novaha-recovery-0123456789.token"
    token.write_text("secret")
    changed, _where, _written, removed = rf.write_files(str(tmp_path / "r"), {}, 0o640, 0o750, [str(token), str(tmp_path / "gone.token")], False)
    assert changed and removed == [str(token)] and not token.exists()


def test_check_mode_says_what_it_would_do_and_does_nothing(tmp_path):
    token = tmp_path / "run.token"
    token.write_text("secret")
    directory = tmp_path / "reports"
    changed, _where, written, removed = rf.write_files(str(directory), {"report.md": "x"}, 0o640, 0o750, [str(token)], True)
    assert changed and written == [str(directory / "report.md")] and removed == [str(token)]
    assert not directory.exists() and token.exists()


@pytest.mark.parametrize("name", ["../report.md", "sub/report.md", "..", ".", ""])
def test_a_name_that_is_not_a_plain_file_name_is_refused_before_anything_is_written(tmp_path, name):
    with pytest.raises(AnsibleActionFail, match="not a plain file name"):
        rf.write_files(str(tmp_path / "r"), {"report.md": "x", name: "y"}, 0o640, 0o750, [], False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("value, mode", [("0640", 0o640), ("640", 0o640), (0o600, 0o600), ("0750", 0o750)])
def test_modes_are_read_as_octal(value, mode):
    assert rf.octal_mode(value, "mode") == mode


@pytest.mark.parametrize("value", ["rw-r-----", "0999", "-1", None, "77777"])
def test_a_mode_that_is_not_an_octal_permission_is_a_clear_error(value):
    with pytest.raises(AnsibleActionFail, match="must be an octal permission"):
        rf.octal_mode(value, "mode")
