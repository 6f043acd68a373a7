"""Splitting one G-code line into its command and parameter words, cheaply.

The fast path is `str.find` / `str.split` / `float` per word: no regular expression unless a line is
written without spaces (`G1X10Y20`), which firmware accepts too, or carries bare letters (`G28 X`).
"""

from __future__ import annotations

import re

_WORD = re.compile(r"([A-Z])\s*([-+]?(?:\d+\.?\d*|\.\d+))?")
_PAREN = re.compile(r"\([^)]*\)?")


def clean(raw: str) -> str:
    """The executable part of a line, upper-cased: comments (`;`, `(...)`), N-number and checksum gone."""
    i = raw.find(";")
    code = raw[:i] if i >= 0 else raw
    if "(" in code:
        code = _PAREN.sub(" ", code)
    if "*" in code:
        star = code.rfind("*")
        if code[star + 1 :].strip().isdigit():  # a checksum, not GRBL's `$RST=*`
            code = code[:star]
    code = code.strip()
    if not code:
        return code
    if not code.isupper():
        code = code.upper()
    if code[0] == "N":
        # A line number written in the file: the host frames lines itself, so drop it.
        j = 1
        while j < len(code) and (code[j].isdigit() or code[j] == " "):
            j += 1
        code = code[j:]
    return code


def command_of(word: str) -> str:
    """`G01` -> `G1`, `M03` -> `M3`: firmware reads the number, not the spelling."""
    if len(word) > 2 and word[1] == "0":
        return word[0] + (word[1:].lstrip("0") or "0")
    return word


def split_glued(code: str) -> list[str]:
    """Words of a line written without spaces (`G1X10Y20E.5`): each letter and the number after it."""
    return [letter + number for letter, number in _WORD.findall(code)]


def values(words: list[str]) -> dict[str, float]:
    """Parameter letters to numbers (words after the command); bare letters such as `G28 X` are left out."""
    try:
        return {w[0]: float(w[1:]) for w in words[1:]}
    except ValueError:
        out: dict[str, float] = {}
        for w in split_glued(" ".join(words[1:])):
            if len(w) > 1:
                out[w[0]] = float(w[1:])
        return out


def letters(words: list[str]) -> set[str]:
    """Parameter letters present, with or without a number (`G28 X Y` homes X and Y)."""
    return {w[0] for w in split_glued(" ".join(words[1:]))}
