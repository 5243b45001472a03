"""Gaming-PC session locks: the command backend (with a recorder and for real), loginctl,
Windows (import-safe off Windows), ``pc.auto`` on each platform and the simulation,
plus their registry rows."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import pytest

from devices.errors import (
    DeviceConfigError,
    DeviceError,
    DeviceProtocolError,
    DeviceTimeout,
    DeviceUnavailable,
)
from devices.pc import (
    LINUX_NOTIFY_CMD,
    WINDOWS_NOTIFY_CMD,
    CommandResult,
    CommandSessionLock,
    LoginctlSessionLock,
    SessionLock,
    SimulatedSessionLock,
    WindowsSessionLock,
    auto_backend,
    auto_session_lock,
    render_argv,
)
from devices.pc.command import MAX_TEXT_LENGTH
from devices.registry import AutoLockConfig, DeviceSpec, build_session_lock, parse_config

Outcome = CommandResult | BaseException


class Recorder:
    """A :data:`~devices.pc.Runner` that records argv and plays scripted outcomes."""

    def __init__(self, *outcomes: Outcome) -> None:
        self.calls: list[tuple[list[str], float]] = []
        self.outcomes = list(outcomes)

    def __call__(self, argv: Sequence[str], timeout_s: float) -> CommandResult:
        self.calls.append((list(argv), timeout_s))
        outcome = self.outcomes.pop(0) if self.outcomes else CommandResult(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @property
    def argvs(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]


def command_lock(runner: Recorder, **options: Any) -> CommandSessionLock:
    return CommandSessionLock(
        ["lockit", "--now"],
        ["unlockit"],
        ["notify", "--", "{title}", "Fabrique: {message}"],
        runner=runner,
        timeout_s=2.5,
        **options,
    )


# ------------------------------------------------------------------ command backend


def test_command_backend_runs_each_argv_without_shell_and_with_its_timeout() -> None:
    runner = Recorder()
    pc = command_lock(runner)
    pc.lock()
    pc.unlock()
    pc.notify("Plus que 2 minutes", "pense à sauvegarder ta partie")
    assert runner.calls == [
        (["lockit", "--now"], 2.5),
        (["unlockit"], 2.5),
        (["notify", "--", "Plus que 2 minutes", "Fabrique: pense à sauvegarder ta partie"], 2.5),
    ]


def test_hostile_text_stays_one_literal_argument() -> None:
    runner = Recorder()
    command_lock(runner).notify("-rf; $(reboot) {message}", "`id` && echo {title}\x00!")
    assert runner.argvs == [
        ["notify", "--", "-rf; $(reboot) {message}", "Fabrique: `id` && echo {title}!"]
    ]


def test_render_argv_cuts_long_text_and_leaves_other_braces() -> None:
    argv = render_argv(["x", "{title}", '{"k": "{message}"}'], {"title": "t" * 900, "message": "m"})
    assert argv == ["x", "t" * MAX_TEXT_LENGTH, '{"k": "m"}']


def test_is_locked_follows_successful_commands_without_a_status_command() -> None:
    runner = Recorder(CommandResult(0), CommandResult(0), CommandResult(1, stderr="no session"))
    pc = command_lock(runner)
    assert pc.is_locked() is None  # never commanded
    pc.lock()
    assert pc.is_locked() is True
    pc.unlock()
    assert pc.is_locked() is False
    with pytest.raises(DeviceProtocolError):
        pc.lock()
    assert pc.is_locked() is None  # a failed lock leaves the state unknown
    assert len(runner.calls) == 3  # is_locked ran nothing


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [("yes\n", True), ("no\n", False), ("TRUE", True), ("0", False), ("locked", True)],
)
def test_status_command_output_is_parsed(stdout: str, expected: bool) -> None:
    runner = Recorder(CommandResult(0, stdout=stdout))
    pc = command_lock(runner, status_cmd=["state", "--query"])
    assert pc.is_locked() is expected
    assert runner.argvs == [["state", "--query"]]


def test_unexpected_status_output_is_a_protocol_error() -> None:
    pc = command_lock(Recorder(CommandResult(0, stdout="maybe")), status_cmd=["state"])
    with pytest.raises(DeviceProtocolError, match="'maybe', not yes/no"):
        pc.is_locked()


@pytest.mark.parametrize(
    ("outcome", "error", "message"),
    [
        (subprocess.TimeoutExpired(["lockit"], 2.5), DeviceTimeout, "timed out after 2.5 s"),
        (FileNotFoundError(2, "No such file"), DeviceConfigError, "cannot run 'lockit'"),
        (PermissionError(13, "Permission denied"), DeviceConfigError, "cannot run 'lockit'"),
        (OSError(11, "Resource temporarily unavailable"), DeviceUnavailable, "cannot start"),
        (
            CommandResult(1, stderr="Failed to issue method call: Access denied\n"),
            DeviceProtocolError,
            "exited with status 1: Failed to issue method call: Access denied",
        ),
        (CommandResult(3), DeviceProtocolError, "status 3: no error output"),
    ],
)
def test_failures_are_translated_and_chained(
    outcome: Outcome, error: type[DeviceError], message: str
) -> None:
    pc = command_lock(Recorder(outcome))
    with pytest.raises(error, match=message) as info:
        pc.lock()
    if isinstance(outcome, BaseException):
        assert info.value.__cause__ is outcome


def test_open_and_close_lock_and_close_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    runner = Recorder()
    with pytest.raises(KeyError), command_lock(runner) as pc:
        pc.unlock()
        raise KeyError("agent bug")
    assert runner.argvs == [["lockit", "--now"], ["unlockit"], ["lockit", "--now"]]

    failing = command_lock(Recorder(CommandResult(0), CommandResult(1, stderr="gone")))
    with caplog.at_level(logging.ERROR), failing:
        pass
    assert "could not lock the session on close" in caplog.text


def test_open_raises_when_the_lock_fails() -> None:
    pc = command_lock(Recorder(subprocess.TimeoutExpired(["lockit"], 2.5)))
    with pytest.raises(DeviceTimeout), pc:
        pytest.fail("must not run unlocked")


def test_notify_without_a_command_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    runner = Recorder()
    pc = CommandSessionLock(["l"], ["u"], runner=runner)
    with caplog.at_level(logging.INFO):
        pc.notify("Fin", "Ta session est finie")
    assert runner.calls == []
    assert "not shown: Fin: Ta session est finie" in caplog.text


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"lock_cmd": []}, "lock_cmd must be a non-empty list"),
        ({"lock_cmd": [""]}, "lock_cmd must be a non-empty list"),
        ({"unlock_cmd": "loginctl unlock-session"}, "unlock_cmd must be a non-empty list"),
        ({"lock_cmd": ["lock", "{title}"]}, "lock_cmd cannot use"),
        ({"status_cmd": ["s", "{message}"]}, "status_cmd cannot use"),
        ({"notify_cmd": []}, "notify_cmd must be a non-empty list"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_unworkable_commands_are_refused(options: dict[str, Any], problem: str) -> None:
    arguments: dict[str, Any] = {"lock_cmd": ["l"], "unlock_cmd": ["u"], **options}
    with pytest.raises(DeviceConfigError, match=problem):
        CommandSessionLock(**arguments)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_default_runner_runs_real_processes() -> None:
    pc = CommandSessionLock(
        python("pass"),
        python("import sys; sys.stderr.write('refused'); sys.exit(4)"),
        [*python("import sys; assert sys.argv[1:] == ['T', 'a b']"), "{title}", "{message}"],
        status_cmd=python("print('yes')"),
        timeout_s=10,
    )
    pc.lock()
    pc.notify("T", "a b")
    assert pc.is_locked() is True
    with pytest.raises(DeviceProtocolError, match="status 4: refused"):
        pc.unlock()


def test_the_default_runner_kills_at_the_timeout_and_reports_missing_programs() -> None:
    slow = CommandSessionLock(python("import time; time.sleep(30)"), ["u"], timeout_s=0.3)
    with pytest.raises(DeviceTimeout, match=r"timed out after 0\.3 s"):
        slow.lock()
    missing = CommandSessionLock(["/nonexistent/fabrique-lock"], ["u"])
    with pytest.raises(DeviceConfigError, match="cannot run"):
        missing.lock()


# ------------------------------------------------------------------ loginctl


def test_loginctl_argv_for_a_given_session() -> None:
    runner = Recorder(CommandResult(0), CommandResult(0), CommandResult(0, "no\n"))
    pc = LoginctlSessionLock("c2", runner=runner, timeout_s=3)
    pc.lock()
    pc.unlock()
    assert pc.is_locked() is False
    pc.notify("Attention", "-2 minutes")
    assert runner.argvs == [
        ["loginctl", "lock-session", "c2"],
        ["loginctl", "unlock-session", "c2"],
        ["loginctl", "show-session", "c2", "--property=LockedHint", "--value"],
        [
            "notify-send",
            "--app-name=fabrique",
            "--urgency=critical",
            "--",
            "Attention",
            "-2 minutes",
        ],
    ]
    assert {timeout for _, timeout in runner.calls} == {3}


def test_loginctl_argv_for_the_callers_own_session() -> None:
    runner = Recorder(CommandResult(0), CommandResult(0), CommandResult(0, "yes"))
    pc = LoginctlSessionLock(runner=runner, loginctl="/usr/bin/loginctl", notify_cmd=None)
    pc.lock()
    pc.unlock()
    assert pc.is_locked() is True
    pc.notify("not", "shown")
    assert runner.argvs == [
        ["/usr/bin/loginctl", "lock-session"],
        ["/usr/bin/loginctl", "unlock-session"],
        ["/usr/bin/loginctl", "show-session", "auto", "--property=LockedHint", "--value"],
    ]


@pytest.mark.parametrize("session_id", ["", "-h", "--all", "2 3", "a/b", "x" * 65])
def test_loginctl_refuses_what_is_not_a_session_id(session_id: str) -> None:
    with pytest.raises(DeviceConfigError, match="invalid logind session id"):
        LoginctlSessionLock(session_id)


# ------------------------------------------------------------------ Windows


class FakeUser32:
    def __init__(self, result: int) -> None:
        self.result = result
        self.calls = 0

    def LockWorkStation(self) -> int:
        self.calls += 1
        return self.result


@pytest.mark.skipif(sys.platform == "win32", reason="checks the behaviour off Windows")
def test_windows_backend_imports_here_and_fails_only_when_locking() -> None:
    runner = Recorder()
    pc = WindowsSessionLock(runner=runner)
    with pytest.raises(DeviceConfigError, match="needs Windows"):
        pc.lock()
    with pytest.raises(DeviceConfigError, match="needs Windows"), pc:
        pytest.fail("must not run unlocked")
    pc.notify("Fin de session", "Sauvegarde !")
    assert runner.argvs == [["msg", "*", "/TIME:60", "Fin de session: Sauvegarde !"]]


def test_windows_lock_through_user32() -> None:
    user32 = FakeUser32(1)
    runner = Recorder()
    with WindowsSessionLock(runner=runner, user32=lambda: user32) as pc:
        pc.unlock()  # no unlock command: the player signs in
        assert pc.is_locked() is None
    assert user32.calls == 2  # open and close
    assert runner.calls == []
    refused = WindowsSessionLock(user32=lambda: FakeUser32(0))
    with pytest.raises(DeviceProtocolError, match="LockWorkStation failed"):
        refused.lock()


def test_windows_unlock_and_notify_commands() -> None:
    runner = Recorder(CommandResult(0), CommandResult(2, stderr="no provider"))
    pc = WindowsSessionLock(
        ["toast.exe", "{title}", "{message}"],
        ["cp-helper", "unlock"],
        runner=runner,
        user32=lambda: FakeUser32(1),
    )
    pc.notify("A", "B")
    with pytest.raises(DeviceProtocolError, match="no provider"):
        pc.unlock()
    assert runner.argvs == [["toast.exe", "A", "B"], ["cp-helper", "unlock"]]


# ------------------------------------------------------------------ simulation


def test_simulated_lock_contract() -> None:
    sim = SimulatedSessionLock()
    with pytest.raises(DeviceUnavailable, match="not open"):
        sim.unlock()
    with sim:
        assert sim.is_locked() is True
        sim.unlock()
        sim.notify("Pause", "10 minutes de pause")
        assert sim.is_locked() is False
        sim.fail()
        with pytest.raises(DeviceUnavailable):
            sim.lock()
        sim.recover()
        sim.fail(DeviceTimeout("slow"))
    assert sim.history == ["lock", "unlock", "lock"]  # locked on close, even failing
    assert sim.notifications == [("Pause", "10 minutes de pause")]
    assert not sim.is_open


# ------------------------------------------------------------------ registry


@pytest.mark.parametrize(
    ("name", "options", "cls"),
    [
        ("pc.loginctl", {}, LoginctlSessionLock),
        ("pc.loginctl", {"session_id": "c2", "notify_cmd": None}, LoginctlSessionLock),
        ("pc.command", {"lock_cmd": ["l"], "unlock_cmd": ["u"]}, CommandSessionLock),
        ("pc.windows", {}, WindowsSessionLock),
        ("pc.sim", {}, SimulatedSessionLock),
    ],
)
def test_registry_builds_each_pc_kind(name: str, options: dict[str, Any], cls: type) -> None:
    lock = build_session_lock(name, options)
    assert isinstance(lock, cls)
    assert isinstance(lock, SessionLock)
    spec = DeviceSpec(kind=name, options=options)
    assert spec.role == "pc"
    assert isinstance(spec.build_session_lock(), cls)


def test_registry_carries_the_pc_options() -> None:
    lock = build_session_lock(
        "pc.command",
        {
            "lock_cmd": ["xdg-screensaver", "lock"],
            "unlock_cmd": ["true"],
            "notify_cmd": ["zenity", "--info", "--text={message}"],
            "status_cmd": ["locked?"],
            "timeout_s": 1.5,
        },
    )
    assert isinstance(lock, CommandSessionLock)
    assert (lock.lock_cmd, lock.status_cmd, lock.timeout_s) == (
        ("xdg-screensaver", "lock"),
        ("locked?",),
        1.5,
    )
    loginctl = build_session_lock("pc.loginctl", {"session_id": "3"})
    assert isinstance(loginctl, LoginctlSessionLock)
    assert (loginctl.lock_cmd, loginctl.notify_cmd) == (
        ("loginctl", "lock-session", "3"),
        LINUX_NOTIFY_CMD,
    )


@pytest.mark.parametrize(
    ("name", "options", "problem"),
    [
        ("pc.loginctl", {"session_id": "-h"}, "session_id"),
        ("pc.loginctl", {"timeout_s": 0}, "timeout_s"),
        ("pc.command", {"lock_cmd": ["l"]}, "unlock_cmd"),
        ("pc.command", {"lock_cmd": [], "unlock_cmd": ["u"]}, "lock_cmd"),
        ("pc.command", {"lock_cmd": [""], "unlock_cmd": ["u"]}, "lock_cmd"),
        ("pc.windows", {"notify_cmd": []}, "notify_cmd"),
        ("pc.sim", {"colour": "red"}, "colour"),
    ],
)
def test_registry_rejects_invalid_pc_options(
    name: str, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(DeviceConfigError, match=problem):
        parse_config(name, options)


def test_a_pc_kind_is_not_a_laser() -> None:
    with pytest.raises(DeviceConfigError, match="has role 'pc', not 'laser'"):
        DeviceSpec(kind="pc.sim").build_laser()


# ------------------------------------------------------------------ pc.auto


@pytest.mark.parametrize(
    ("platform", "backend"),
    [("linux", "pc.loginctl"), ("linux2", "pc.loginctl"), ("win32", "pc.windows")],
)
def test_auto_picks_the_lock_of_the_platform(platform: str, backend: str) -> None:
    assert auto_backend(platform) == backend


@pytest.mark.parametrize("platform", ["darwin", "freebsd14", "cygwin", "emscripten"])
def test_auto_refuses_a_platform_without_a_lock_and_names_the_way_out(platform: str) -> None:
    with pytest.raises(
        DeviceConfigError, match=f"no built-in session lock on platform '{platform}'"
    ):
        auto_backend(platform)
    with pytest.raises(DeviceConfigError, match=r'kind = "pc\.command"'):
        auto_session_lock(platform=platform)


def test_auto_on_linux_is_loginctl_with_notify_send() -> None:
    runner = Recorder()
    pc = auto_session_lock(platform="linux", runner=runner, timeout_s=4)
    assert isinstance(pc, LoginctlSessionLock)
    pc.lock()
    pc.unlock()
    pc.notify("fabrique", "Plus que 2 minutes : pense à sauvegarder !")
    # "auto": the agent's session, or the user's graphical one from a systemd --user unit.
    assert runner.argvs == [
        ["loginctl", "lock-session", "auto"],
        ["loginctl", "unlock-session", "auto"],
        [*LINUX_NOTIFY_CMD[:-2], "fabrique", "Plus que 2 minutes : pense à sauvegarder !"],
    ]
    assert {timeout for _, timeout in runner.calls} == {4}
    own = auto_session_lock(platform="linux", session_id="c2", notify_cmd=["n", "{message}"])
    assert isinstance(own, LoginctlSessionLock)
    assert (own.lock_cmd, own.notify_cmd) == (
        ("loginctl", "lock-session", "c2"),
        ("n", "{message}"),
    )


def test_auto_on_windows_is_lockworkstation_with_msg() -> None:
    runner = Recorder()
    pc = auto_session_lock(platform="win32", runner=runner, unlock_cmd=["cp-helper", "unlock"])
    assert isinstance(pc, WindowsSessionLock)
    pc.notify("fabrique", "Temps écoulé : ta session est terminée.")
    pc.unlock()
    assert runner.argvs == [
        [*WINDOWS_NOTIFY_CMD[:-1], "fabrique: Temps écoulé : ta session est terminée."],
        ["cp-helper", "unlock"],
    ]


@pytest.mark.parametrize(
    ("platform", "options", "problem"),
    [
        ("linux", {"unlock_cmd": ["cp-helper"]}, "unlock_cmd applies to Windows only"),
        ("win32", {"session_id": "c2"}, "session_id applies to Linux"),
    ],
)
def test_auto_refuses_an_option_of_the_other_platform(
    platform: str, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(DeviceConfigError, match=problem):
        auto_session_lock(platform=platform, **options)


@pytest.mark.parametrize(
    ("platform", "cls"), [("linux", LoginctlSessionLock), ("win32", WindowsSessionLock)]
)
def test_registry_builds_pc_auto_for_the_platform_it_runs_on(
    platform: str, cls: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(parse_config("pc.auto", {"session_id": "c2"}), AutoLockConfig)  # any OS
    monkeypatch.setattr("sys.platform", platform)
    lock = DeviceSpec(kind="pc.auto", options={"timeout_s": 2}).build_session_lock()
    assert isinstance(lock, cls)
    assert isinstance(lock, SessionLock)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"session_id": "-h"}, "session_id"),
        ({"notify_cmd": []}, "notify_cmd"),
        ({"lock_cmd": ["l"]}, "lock_cmd"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_registry_rejects_invalid_pc_auto_options(options: dict[str, Any], problem: str) -> None:
    with pytest.raises(DeviceConfigError, match=problem):
        parse_config("pc.auto", options)


# ------------------------------------------------------------------ French text, real processes

#: What the agent may notify: accents, guillemets, apostrophes, quotes and shell syntax.
FRENCH = '« Pause obligatoire » dans 10 minutes : pense à sauvegarder ! L\'équipe dit "ok"'
HOSTILE = "$(reboot) ; rm -rf ~ && `id` | echo $HOME 'fin'"


def test_french_text_reaches_the_program_intact_as_argv_without_a_shell() -> None:
    check = (
        f"import sys; assert sys.argv[1:] == ['--', {'Lina : ' + HOSTILE!r}, {FRENCH!r}], sys.argv"
    )
    pc = auto_session_lock(
        platform="linux",
        notify_cmd=[*python(check), "--", "{title}", "{message}"],
        timeout_s=10,
    )
    pc.notify("Lina : " + HOSTILE, FRENCH)  # a non-zero exit (failed assert) would raise
    command = CommandSessionLock(
        python("pass"), python("pass"), [*python(check), "--", "{title}", "{message}"]
    )
    command.notify("Lina : " + HOSTILE, FRENCH)
