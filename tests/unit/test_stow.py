"""STOW-RS request body and response reading (the transport is tested against Orthanc in
tests/acceptance/test_stow.py)."""

from __future__ import annotations

import email.parser
import email.policy

from dicomnode.stow import multipart_body, statuses


def test_multipart_body_holds_each_file_as_one_part() -> None:
    body, content_type = multipart_body([b"DICM-one", b"two\r\n--not-a-boundary"])
    assert content_type.startswith('multipart/related; type="application/dicom"; boundary=')
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["application/dicom"] * 2
    assert [p.get_payload(decode=True) for p in parts] == [b"DICM-one", b"two\r\n--not-a-boundary"]


def _item(uid: str, **extra: object) -> dict:
    return {"00081155": {"vr": "UI", "Value": [uid]}} | {k: {"vr": "US", "Value": [v]} for k, v in extra.items()}


def test_statuses_per_instance_from_the_response() -> None:
    response = {
        "00081199": {"vr": "SQ", "Value": [_item("1.1"), _item("1.2", **{"00081196": 0xB000})]},
        "00081198": {"vr": "SQ", "Value": [_item("1.3", **{"00081197": 0xA700}), _item("1.4")]},
    }
    assert statuses(response) == {"1.1": 0x0000, "1.2": 0xB000, "1.3": 0xA700, "1.4": 0xC000}
    assert statuses({}) == {} and statuses({"00081199": {"vr": "SQ"}}) == {}
