"""Print release as rows of the controller's table: uploads, taps and time, with `now` as an input."""

from __future__ import annotations

from fabnode.machine.actions import CheckUpload, ExpireUpload, RecordAccess, Reply, StartJob, TakeUpload
from fabnode.machine.controller import Controller
from fabnode.machine.events import (
    BadgeTapped,
    CancelRequested,
    JobEnded,
    PauseRequested,
    ResumeRequested,
    StorageChanged,
    Tick,
    UploadChecked,
    UploadReceived,
)
from fabnode.machine.state import MemberRef, QueuedUpload, State
from tests.unit.controller_settings import settings_for_tests

ADA = MemberRef(1, "member", "Ada Lovelace")
GRACE = MemberRef(2, "member", "Grace Hopper")
TOM = MemberRef(9, "technician", "Tom")
DAY = 24 * 3600.0
CLAIM = 15 * 60.0


def controller() -> Controller:
    c = Controller(settings_for_tests(kind="printer", idle_timeout_s=3600.0, cooldown_max_s=300.0))
    c.start(0.0)
    return c


def upload(ident: str, owner: MemberRef | None, print_now: bool = True, at: float = 0.0) -> QueuedUpload:
    claim = at + CLAIM if owner is None else None
    return QueuedUpload(ident * 32, f"{ident}.gcode", owner, print_now, at + DAY, claim)


def release(c: Controller, now: float, who: MemberRef) -> list:
    """A tap that releases a waiting upload: the session opens, the upload is checked aside, then starts."""
    actions = c.handle(tap(now, who))
    check = next(a for a in actions if isinstance(a, CheckUpload))
    assert check.member_id == who.id and c.state in (State.UNLOCKED, State.MAINTENANCE)
    checked = UploadChecked(now + 0.5, check.upload_id, who.id, prepared=f"pre-{check.upload_id[0]}")
    return actions + c.handle(checked)


def tap(now: float, who: MemberRef, link: str | None = None) -> BadgeTapped:
    return BadgeTapped(now, f"badge-{who.id}", who, link_problem=link)


def replies(actions: list) -> list[Reply]:
    return [a for a in actions if isinstance(a, Reply)]


def test_print_true_in_the_owners_open_session_starts_at_once() -> None:
    c = controller()
    c.handle(tap(1.0, ADA))
    actions = c.handle(UploadReceived(2.0, upload("a", ADA), prepared="pre-a"))
    start = next(a for a in actions if isinstance(a, StartJob))
    assert (c.state, start.job.source, start.job.uploaded_by, start.prepared) == (
        State.RUNNING, "upload", "Ada Lovelace", "pre-a")
    assert TakeUpload("a" * 32, "a" * 32) in actions and replies(actions)[0].ok
    assert c.upload_queue == ()


def test_an_upload_waits_for_its_member_and_their_tap_opens_the_session_and_starts_it() -> None:
    c = controller()
    [reply] = replies(c.handle(UploadReceived(1.0, upload("a", ADA))))
    assert reply.ok and "waits for Ada Lovelace's tap" in reply.message and c.state is State.LOCKED
    actions = c.handle(tap(5.0, GRACE))  # another member's tap opens her own session, nothing else
    assert c.state is State.UNLOCKED and not any(isinstance(a, StartJob) for a in actions)
    c.handle(tap(6.0, GRACE))  # Grace badges out
    actions = release(c, 7.0, ADA)  # from COOLDOWN: session and job from the same tap
    access = next(a for a in actions if isinstance(a, RecordAccess))
    assert access.granted and access.reason == "session opened; upload a.gcode released"
    assert next(a for a in actions if isinstance(a, StartJob)).prepared == "pre-a"
    assert c.state is State.RUNNING and c.session is not None and c.session.member == ADA
    assert c.job is not None and c.job.member_id == ADA.id


def test_print_false_waits_even_in_the_owners_session_and_their_tap_starts_it() -> None:
    c = controller()
    c.handle(tap(1.0, ADA))
    assert "waits" in replies(c.handle(UploadReceived(2.0, upload("a", ADA, print_now=False))))[0].message
    assert c.state is State.UNLOCKED
    actions = release(c, 3.0, ADA)  # no badge-out: the tap releases the upload
    assert c.state is State.RUNNING
    assert next(a for a in actions if isinstance(a, RecordAccess)).reason == "upload a.gcode released"


def test_an_upload_in_another_members_session_waits() -> None:
    c = controller()
    c.handle(tap(1.0, GRACE))
    actions = c.handle(UploadReceived(2.0, upload("a", ADA)))
    assert c.state is State.UNLOCKED and not any(isinstance(a, StartJob) for a in actions)
    assert [u.id for u in c.upload_queue] == ["a" * 32]


def test_a_lab_upload_goes_to_the_next_trained_member_within_the_claim_window() -> None:
    c = controller()
    c.handle(UploadReceived(0.0, upload("l", None)))
    c.handle(tap(10.0, TOM))  # a technician's maintenance tap claims nothing
    assert c.state is State.MAINTENANCE and len(c.upload_queue) == 1
    c.handle(tap(11.0, TOM))
    actions = release(c, CLAIM - 1.0, GRACE)
    start = next(a for a in actions if isinstance(a, StartJob))
    assert c.state is State.RUNNING and start.job.uploaded_by == "lab" and start.job.member_id == GRACE.id


def test_a_lab_upload_unclaimed_in_its_window_moves_to_stale() -> None:
    c = controller()
    c.handle(UploadReceived(0.0, upload("l", None)))
    assert c.next_deadline() == CLAIM
    actions = c.handle(Tick(CLAIM))
    assert actions == [ExpireUpload("l" * 32, "no trained member tapped within [web] claim_window_min")]
    assert c.upload_queue == () and c.next_deadline() is None
    c.handle(tap(CLAIM + 1.0, ADA))
    assert c.state is State.UNLOCKED


def test_uploads_not_started_within_the_expiry_move_to_stale_in_any_state() -> None:
    c = controller()
    c.handle(UploadReceived(0.0, upload("a", ADA)))
    c.handle(tap(1.0, GRACE))
    c.handle(UploadReceived(2.0, upload("b", GRACE, print_now=False, at=2.0)))
    assert c.next_deadline() is not None and c.next_deadline() <= DAY
    actions = c.handle(Tick(DAY))  # Grace's idle session ended long ago; Ada's upload's time is up
    assert ExpireUpload("a" * 32, "not started within [web] upload_expiry_h") in actions
    assert [u.id for u in c.upload_queue] == ["b" * 32]
    assert ExpireUpload("b" * 32, "not started within [web] upload_expiry_h") in c.handle(Tick(DAY + 2.0))


def test_an_upload_found_after_its_time_expires_at_once() -> None:
    c = controller()
    old = QueuedUpload("o" * 32, "o.gcode", ADA, True, expires_at=5.0)
    actions = c.handle(UploadReceived(10.0, old))
    assert ExpireUpload("o" * 32, "not started within [web] upload_expiry_h") in actions
    assert replies(actions)[0].ok and c.upload_queue == ()


def test_an_untrained_owners_upload_is_refused_naming_why() -> None:
    c = controller()
    [reply] = replies(c.handle(UploadReceived(1.0, upload("a", ADA), denial="not trained on prusa-mk4")))
    assert (reply.ok, reply.forbidden) == (False, True)
    assert reply.message == "upload refused: not trained on prusa-mk4"
    assert c.upload_queue == ()


def test_a_tap_keeps_the_upload_waiting_when_the_firmware_cannot_take_it() -> None:
    c = controller()
    c.handle(UploadReceived(1.0, upload("a", ADA)))
    actions = c.handle(tap(2.0, ADA, link="the firmware's port is not connected"))
    assert c.state is State.UNLOCKED and len(c.upload_queue) == 1
    reason = next(a for a in actions if isinstance(a, RecordAccess)).reason
    assert reason == "session opened; upload a.gcode waits: the firmware's port is not connected"
    c.handle(StorageChanged(3.0, "disk full"))
    refused = c.handle(tap(4.0, ADA))
    assert c.state is State.UNLOCKED and not next(a for a in refused if isinstance(a, RecordAccess)).granted


def test_pause_and_cancel_only_for_their_member_or_a_technician() -> None:
    c = controller()
    c.handle(tap(1.0, ADA))
    c.handle(UploadReceived(2.0, upload("a", ADA), prepared="pre-a"))
    job = "a" * 32
    [no] = replies(c.handle(PauseRequested(3.0, GRACE, job)))
    assert (no.ok, no.forbidden) == (False, True) and c.state is State.RUNNING
    [no] = replies(c.handle(CancelRequested(3.0, "by Grace", GRACE, job)))
    assert no.forbidden and c.state is State.RUNNING
    [stale] = replies(c.handle(PauseRequested(3.0, ADA, "x" * 32)))
    assert not stale.ok and not stale.forbidden
    assert replies(c.handle(PauseRequested(4.0, ADA, job)))[0].ok and c.state is State.PAUSED
    assert replies(c.handle(ResumeRequested(5.0, TOM, job)))[0].ok and c.state is State.RUNNING
    assert replies(c.handle(CancelRequested(6.0, "by Tom", TOM, job)))[0].ok
    c.handle(JobEnded(7.0, job, "cancelled"))
    assert c.state is State.UNLOCKED


def test_a_released_upload_that_fails_its_check_moves_to_stale_and_a_changed_session_keeps_it() -> None:
    c = controller()
    c.handle(UploadReceived(1.0, upload("a", ADA)))
    c.handle(UploadReceived(1.0, upload("b", ADA)))
    check = next(a for a in c.handle(tap(2.0, ADA)) if isinstance(a, CheckUpload))
    problems = ("line 2: X900 outside the volume",)
    actions = c.handle(UploadChecked(3.0, check.upload_id, ADA.id, problems=problems))
    assert ExpireUpload("a" * 32, "fails preflight: line 2: X900 outside the volume") in actions
    assert not replies(actions)[0].ok and c.state is State.UNLOCKED
    check = next(a for a in c.handle(tap(4.0, ADA)) if isinstance(a, CheckUpload))
    c.handle(tap(5.0, GRACE))  # Grace's tap ends Ada's session before the check came back
    [reply] = replies(c.handle(UploadChecked(6.0, check.upload_id, ADA.id, prepared="pre-b")))
    assert not reply.ok and "waits for the next tap" in reply.message
    assert [u.id for u in c.upload_queue] == ["b" * 32] and c.state is State.COOLDOWN
