#!/usr/bin/env python3
"""Writes the seed corpora of the stream and codec fuzz targets from the `### Example:` hex
blocks of PROTOCOL.md (parsed as protocol/tests/golden.rs parses them): every example as it
is, bodies without their length prefix for round_trip, and whole conversations (a hello, then
calls or replies) for daemon_decode and bridge_decode. Files are named `seed-*` and written
over; other files in the corpus directories (found by fuzzing) are left alone.

    python3 fuzz/seeds.py
"""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def examples():
    """{name: bytes} for every example block of PROTOCOL.md."""
    found, name, block = {}, None, None
    for line in (ROOT / "PROTOCOL.md").read_text().splitlines():
        if line.startswith("### Example: "):
            name = line.removeprefix("### Example: ").strip()
        elif name and line.strip() == "```hex":
            block = bytearray()
        elif block is not None and line.strip() == "```":
            found[name], name, block = bytes(block), None, None
        elif block is not None:
            block += bytes(int(t, 16) for t in line.split("#")[0].split())
    assert found, "no examples in PROTOCOL.md"
    return found


def with_uid(frame, uid):
    """A call frame with another caller uid (stream offset 24): the daemon_decode target's
    scripted daemon picks its answer by uid."""
    return frame[:24] + uid.to_bytes(4, "little") + frame[28:]


def write(target, name, data):
    path = CORPUS / target
    path.mkdir(parents=True, exist_ok=True)
    (path / f"seed-{name}").write_bytes(data)


def main():
    ex = examples()
    calls = [v for k, v in ex.items() if k.startswith("call-")]
    replies = [v for k, v in ex.items() if k.startswith("reply-") or k == "event"]
    for name, frame in ex.items():
        for target in ("daemon_decode", "bridge_decode"):
            write(target, name, frame)
        write("round_trip", name, frame[4:])
    for uid in range(9):
        stream = ex["hello-caller"] + b"".join(with_uid(c, uid) for c in calls) + ex["cancel"]
        write("daemon_decode", f"conversation-uid{uid}", stream)
    write("bridge_decode", "conversation", ex["hello-daemon"] + b"".join(replies))
    print(f"{len(ex)} examples -> {CORPUS}")


if __name__ == "__main__":
    main()
