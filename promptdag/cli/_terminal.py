"""Text from a spec or a model, made safe to print on a terminal.

Task and workflow names, errors and answers come from users and models; printed raw, an ESC
sequence could clear the screen or rewrite earlier lines, BEL rings, and U+202E reverses the
text after it. `safe` shows such characters as escapes instead (`\\x1b`, `\\u202e`), so what is
printed is what is there. JSON output (`--json`) is data, not text for a terminal: it is never
passed through here and stays exact.
"""

from __future__ import annotations

# Bidirectional formatting controls (Unicode's list, as in CVE-2021-42574 "Trojan Source"),
# plus the line and paragraph separators some terminals treat as line breaks.
_BIDI = [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_SEPARATORS = [0x2028, 0x2029]


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# C0 controls, DEL, C1 controls, bidi controls and separators: escaped by default.
_TABLE: dict[int, str] = {
    code: _escape(code)
    for code in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *_BIDI, *_SEPARATORS]
}
# Multi-line text (an answer, a critique) keeps its line breaks and tabs, and nothing else.
_MULTILINE_TABLE = {code: text for code, text in _TABLE.items() if code not in (0x09, 0x0A)}


def safe(text: object, multiline: bool = False) -> str:
    """`text` with terminal control characters shown as escapes.

    Args:
        text: anything; it is printed as `str(text)`.
        multiline: keep newlines and tabs (for answers and reports meant to span lines);
            otherwise they are escaped too, so one line stays one line.
    """
    return str(text).translate(_MULTILINE_TABLE if multiline else _TABLE)
