"""The local KRaft node's helpers that need no broker."""

from __future__ import annotations

import base64
import uuid

import pytest

from trustwatch.tools.stack import kafka_process


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # One draw in 64 encodes to a leading "-": the storage tool then reads it as an option ("-t" has no
    # value) and formatting fails. The first draw here is such a one; the id must come from the next.
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))
    plain = uuid.UUID(bytes=b"\x10" + bytes(15))
    assert base64.urlsafe_b64encode(dashed.bytes).decode().startswith("-")
    draws = iter([dashed, plain])
    monkeypatch.setattr(kafka_process.uuid, "uuid4", lambda: next(draws))
    cid = kafka_process._cluster_id()
    assert cid == base64.urlsafe_b64encode(plain.bytes).rstrip(b"=").decode() and len(cid) == 22


def test_cluster_ids_are_22_url_safe_characters() -> None:
    ids = {kafka_process._cluster_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(len(c) == 22 and not c.startswith("-") and set(c) <= set(_URL_SAFE) for c in ids)


_URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
