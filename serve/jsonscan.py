"""A batch's devices counted from its JSON punctuation, before anything is parsed.

Validating ``{"devices": [...]}`` builds every device (and every value in it) in memory first:
200,000 tiny devices in 64 MB took half a gigabyte before the device count could be checked.
:func:`count_devices` walks the body's structure instead (brackets, commas, colons and the
extent of each string, found with ``bytes.find``, so a photo's base64 is skipped at memory
speed), building nothing, and stops as soon as there are too many devices or too many values.
"""

from __future__ import annotations

import re

from serve.problems import BatchTooLarge, RequestTooLarge

STRUCTURE = re.compile(rb'[\[\]{},:"]')
STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # only for strings with escapes
NON_SPACE = re.compile(rb"\S")
#: JSON values (and keys) allowed per device on average: a device is about 60 (its checklist
#: included); beyond, the body is refused before validation would build them all.
VALUES_PER_DEVICE = 512


def _string_end(body: bytes, start: int) -> int:
    """The index of the quote that closes the string opening at ``start`` (-1: none)."""
    end = body.find(b'"', start + 1)
    if end < 0 or body.find(b"\\", start + 1, end) < 0:
        return end
    m = STRING.match(body, start)
    return m.end() - 1 if m else -1


def count_devices(body: bytes, limit: int) -> int:
    """The number of devices in a batch body, counted without parsing it: BatchTooLarge as soon
    as there are more than ``limit``, RequestTooLarge past ``limit * VALUES_PER_DEVICE`` values.
    A body of another shape counts 0 devices (its validation then says what is wrong)."""
    max_tokens = limit * VALUES_PER_DEVICE * 4 + 64  # a value is at most 4 tokens: "k" : v ,
    depth, tokens, count, pos, elements = 0, 0, 0, 0, 0
    key = last = b""
    array = -1  # the depth of the "devices" array being counted, -1 outside it
    while m := STRUCTURE.search(body, pos):
        i, c = m.start(), body[m.start()]
        pos, tokens = i + 1, tokens + 1
        if tokens > max_tokens:
            raise RequestTooLarge(f"request body: more than {VALUES_PER_DEVICE} JSON values "
                                  f"per device (limit {limit} devices)")
        if c == 0x22:  # "
            end = _string_end(body, i)
            if end < 0:
                break
            last, pos = (body[i + 1:end] if end - i <= 64 else b""), end + 1
        elif c == 0x3A and depth == 1:  # : after a top-level key
            key = last
        elif c in b"[{":
            depth += 1
            if c == 0x5B and depth == 2 and key == b"devices":  # [
                array, elements = depth, 0
                first = NON_SPACE.search(body, pos)
                count = max(count, 1 if first and first.group() != b"]" else 0)
        elif c in b"]}":
            array, depth = (-1 if depth == array else array), depth - 1
        elif c == 0x2C and depth == array:  # , between two devices
            elements += 1
            count = max(count, elements + 1)
            if count > limit:
                raise BatchTooLarge(f"devices: more than the limit of {limit} devices",
                                    "devices")
    return count
