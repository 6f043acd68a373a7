"""Split a stripped GRBL block into words and sort its G/M commands into modal groups.

With the errors GRBL reports at that stage: 1, 2, 4, 20, 21, 23, 24, 25, 38 (and 16, 22 for `$J=`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulators.grbl import codes as C

_VALUE_LETTERS = frozenset("FIJKLNPRSTXYZ")
_NON_NEGATIVE = frozenset("FNPST")
MAX_TOOL_NUMBER = 255


class GcodeError(Exception):
    """A block GRBL refuses; `code` is its error:N."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Words:
    """The G and M commands of a block (in order) and its value words by letter."""

    g: list[float] = field(default_factory=list)
    m: list[float] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)


def read_float(text: str, pos: int) -> tuple[float, int] | None:
    """GRBL's read_float: optional sign, digits with at most one '.', no exponent; None without digits."""
    start = pos
    if pos < len(text) and text[pos] in "+-":
        pos += 1
    digits = 0
    seen_dot = False
    while pos < len(text):
        ch = text[pos]
        if ch.isdigit():
            digits += 1
        elif ch == "." and not seen_dot:
            seen_dot = True
        else:
            break
        pos += 1
    if not digits:
        return None
    return float(text[start:pos]), pos


def parse_words(line: str) -> Words:
    """Words of one block (already upper case, without spaces or comments)."""
    words = Words()
    pos = 0
    while pos < len(line):
        letter = line[pos]
        if not ("A" <= letter <= "Z"):
            raise GcodeError(C.E_EXPECTED_COMMAND_LETTER)
        number = read_float(line, pos + 1)
        if number is None:
            raise GcodeError(C.E_BAD_NUMBER_FORMAT)
        value, pos = number
        _add_word(words, letter, value)
    return words


def _add_word(words: Words, letter: str, value: float) -> None:
    if letter == "G":
        words.g.append(value)
        return
    if letter == "M":
        words.m.append(value)
        return
    if letter not in _VALUE_LETTERS:
        raise GcodeError(C.E_UNSUPPORTED_COMMAND)
    if letter in words.values:
        raise GcodeError(C.E_WORD_REPEATED)
    if letter in _NON_NEGATIVE and value < 0:
        raise GcodeError(C.E_NEGATIVE_VALUE)
    if letter == "T" and value > MAX_TOOL_NUMBER:
        raise GcodeError(C.E_MAX_VALUE_EXCEEDED)
    words.values[letter] = value


@dataclass
class Parsed:
    """The commands and words of one block, after the per-word checks."""

    words: Words
    motion: int | None = None  # explicit motion command in the block
    non_modal: int | None = None  # 4, 10, 28, 281, 30, 301, 53, 92, 921
    axis_command: str = ""  # "", "motion" or "non_modal"
    modal: dict[str, int] = field(default_factory=dict)  # group name -> G/M value
    m_flow: int | None = None
    m_spindle: int | None = None
    m_coolant: int | None = None


def classify(words: Words, jog: bool) -> Parsed:
    """Sort G and M words into modal groups (errors 20, 21, 23, 24)."""
    parsed = Parsed(words)
    for value in words.g:
        _classify_g(parsed, value)
    for value in words.m:
        _classify_m(parsed, value)
    if jog:
        _check_jog(parsed)
    return parsed


_G_GROUPS = {
    17: "plane", 18: "plane", 19: "plane", 90: "distance", 91: "distance", 911: "arc_distance",
    93: "feed_mode", 94: "feed_mode", 20: "units", 21: "units", 40: "cutter", 431: "tlo", 49: "tlo",
    54: "coord", 55: "coord", 56: "coord", 57: "coord", 58: "coord", 59: "coord", 61: "control",
}  # fmt: skip
_G_MOTION = {0, 1, 2, 3, 382, 383, 384, 385, 80}
_G_NON_MODAL = {4, 10, 28, 281, 30, 301, 53, 92, 921}
_G_AXIS_NON_MODAL = {10, 28, 30, 92}


def _g_code(value: float) -> int:
    """G number as an int key: G38.2 -> 382, G1 -> 1; error 20/23 for unknown or fractional codes."""
    whole = int(value)
    mantissa = round(100 * (value - whole))
    if mantissa == 0:
        key = whole
    elif mantissa in (10, 20, 30, 40, 50):
        key = whole * 10 + mantissa // 10
        if key not in (281, 301, 382, 383, 384, 385, 431, 911, 921):
            known = whole in (28, 30, 38, 43, 91, 92)
            raise GcodeError(C.E_UNSUPPORTED_COMMAND if known else C.E_COMMAND_VALUE_NOT_INTEGER)
    else:
        raise GcodeError(C.E_COMMAND_VALUE_NOT_INTEGER)
    if key not in _G_GROUPS and key not in _G_MOTION and key not in _G_NON_MODAL:
        raise GcodeError(C.E_UNSUPPORTED_COMMAND)
    return key


def _classify_g(parsed: Parsed, value: float) -> None:
    key = _g_code(value)
    if key in _G_MOTION:
        if parsed.motion is not None:
            raise GcodeError(C.E_MODAL_GROUP_VIOLATION)
        if parsed.axis_command:
            raise GcodeError(C.E_AXIS_COMMAND_CONFLICT)
        parsed.motion = key
        parsed.axis_command = "motion"
    elif key in _G_NON_MODAL:
        if parsed.non_modal is not None:
            raise GcodeError(C.E_MODAL_GROUP_VIOLATION)
        if key in _G_AXIS_NON_MODAL:
            if parsed.axis_command:
                raise GcodeError(C.E_AXIS_COMMAND_CONFLICT)
            parsed.axis_command = "non_modal"
        parsed.non_modal = key
    else:
        group = _G_GROUPS[key]
        if group in parsed.modal:
            raise GcodeError(C.E_MODAL_GROUP_VIOLATION)
        parsed.modal[group] = key


def _classify_m(parsed: Parsed, value: float) -> None:
    whole = int(value)
    if value != whole:
        raise GcodeError(C.E_COMMAND_VALUE_NOT_INTEGER)
    if whole in (0, 1, 2, 30):
        slot = "m_flow"
    elif whole in (3, 4, 5):
        slot = "m_spindle"
    elif whole in (8, 9):  # M7 (mist) is a compile-time option this build leaves out
        slot = "m_coolant"
    else:
        raise GcodeError(C.E_UNSUPPORTED_COMMAND)
    if getattr(parsed, slot) is not None:
        raise GcodeError(C.E_MODAL_GROUP_VIOLATION)
    setattr(parsed, slot, whole)


def _check_jog(parsed: Parsed) -> None:
    """$J= allows only G20/G21, G90/G91, G53 and axis words with F."""
    allowed_modal = {"units", "distance"}
    if parsed.motion is not None or parsed.non_modal not in (None, 53):
        raise GcodeError(C.E_INVALID_JOG_COMMAND)
    if set(parsed.modal) - allowed_modal or parsed.m_flow or parsed.m_spindle or parsed.m_coolant:
        raise GcodeError(C.E_INVALID_JOG_COMMAND)
    if set(parsed.words.values) - set("XYZFN"):
        raise GcodeError(C.E_INVALID_JOG_COMMAND)
    if "F" not in parsed.words.values:
        raise GcodeError(C.E_UNDEFINED_FEED_RATE)
    parsed.motion = 1
    parsed.axis_command = "motion"
