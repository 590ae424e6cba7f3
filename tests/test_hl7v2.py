"""HL7 v2 ER7 parser/builder (registry/hl7v2.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry import hl7v2
from registry.hl7v2 import DEFAULT_ENCODING, Encoding, HL7ParseError, Message, parse, segment, value

ADT = (
    "MSH|^~\\&|PIF|HOSP|REG|AFF|20240101120000||ADT^A01^ADT_A01|CTRL-1|P|2.5\r"
    "EVN||20240101120000\r"
    "PID|1||123^^^IHE&1.2.3&ISO~N-9^^^&1.2.250.1&ISO||O\\S\\Brien^Ann\\T\\Marie||19800101|F\r"
    "PV1|1|N\r"
)


def test_parse_fields_components_subcomponents_repetitions():
    msg = parse(ADT.encode())
    assert [s.name for s in msg.segments] == ["MSH", "EVN", "PID", "PV1"]
    assert msg.get("MSH-1") == "|" and msg.get("MSH-2") == "^~\\&"
    assert msg.get("MSH-3") == "PIF" and msg.get("MSH-10") == "CTRL-1"
    assert (msg.get("MSH-9.1"), msg.get("MSH-9.2"), msg.get("MSH-9.3")) == ("ADT", "A01", "ADT_A01")
    pid = msg.segment("PID")
    assert len(pid.field(3)) == 2
    assert pid.get(3, 4, 2) == "1.2.3" and pid.get(3, 4, 1) == "IHE" and pid.get(3, 4, 3) == "ISO"
    assert pid.get(3, 1, repetition=1) == "N-9" and pid.get(3, 4, 2, repetition=1) == "1.2.250.1"
    assert pid.get(5, 1) == "O^Brien" and pid.get(5, 2) == "Ann&Marie"  # escapes decoded
    assert pid.get(4) == "" and pid.field(4) == [] and pid.get(99) == "" and pid.get(3, 9) == ""
    assert msg.get("ZZZ-1") == "" and msg.get("PID-3.4.2", repetition=5) == ""


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_segment_separators_tolerated(sep):
    msg = parse(("\n" + ADT.replace("\r", sep) + "\n\n").encode())
    assert [s.name for s in msg.segments] == ["MSH", "EVN", "PID", "PV1"]
    assert msg.get("PV1-2") == "N"


def test_encode_round_trip_is_byte_identical():
    assert parse(ADT).encode() == ADT.encode()
    assert parse(parse(ADT).encode()).segments == parse(ADT).segments


def test_delimiters_come_from_msh1_msh2():
    # field '#', component '*', repetition '!', escape '%', subcomponent '$'
    text = "MSH#*!%$#APP#FAC#####ADT*A04#C9#P#2.5\rPID#1##7***$9.9$ISO!8***$9.9$ISO##A%F%B*C%S%%E%\r"
    msg = parse(text)
    assert msg.encoding == Encoding("#", "*", "!", "%", "$")
    assert msg.get("MSH-9.2") == "A04" and msg.get("MSH-10") == "C9"
    pid = msg.segment("PID")
    assert pid.get(3, 4, 2) == "9.9" and pid.get(3, 1, repetition=1) == "8"
    assert pid.get(5, 1) == "A#B" and pid.get(5, 2) == "C*%"
    assert msg.encode().decode() == text


def test_escape_sequences_decode_and_unknown_kept():
    enc = DEFAULT_ENCODING
    assert enc.unescape_text(r"a\F\b\S\c\T\d\R\e\E\f") == "a|b^c&d~e\\f"
    assert enc.escape_text("a|b^c&d~e\\f") == r"a\F\b\S\c\T\d\R\e\E\f"
    # highlighting, hex and formatting sequences are not delimiters: leave them for the application
    assert enc.unescape_text(r"x\H\bold\N\ \X0D0A\ \.br\ ") == r"x\H\bold\N\ \X0D0A\ \.br\ "
    assert enc.unescape_text("dangling\\") == "dangling\\" and enc.unescape_text("a\\Fb") == "a\\Fb"


@given(st.text())
def test_escape_round_trip(text):
    assert DEFAULT_ENCODING.unescape_text(DEFAULT_ENCODING.escape_text(text)) == text


@given(st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",))))
def test_builder_values_survive_encode_parse(text):
    msg = Message([segment("MSH", "|", "^~\\&", "APP", text),
                   segment("PID", "1", "", value(["a", ["b", text]], text), text)])
    back = parse(msg.encode())
    assert back.get("MSH-4") == text
    pid = back.segment("PID")
    assert pid.get(3, 2, 2) == text and pid.get(3, 1, repetition=1) == text and pid.get(4) == text


def test_builder_drops_trailing_empties_and_pads_set():
    seg = segment("PID", "1", "", value(["x", "", ""]), "")
    assert hl7v2.format_segment(seg) == "PID|1||x"
    seg.set(8, value("M"))
    assert hl7v2.format_segment(seg) == "PID|1||x|||||M"
    assert hl7v2.composite("1^^^&1.2&ISO") == [["1"], [""], [""], ["", "1.2", "ISO"]]


@pytest.mark.parametrize("bad", [b"", b"\r\n", b"PID|1||x\r", b"MSH|^~\r", b"MSH|^^\\&|x\r",
                                 b"MSH|^~\\&|A\rpid|1\r", b"MSH|^~\\&|A\rPIDX|1\r", b"MSHa^~\\&|A\r"])
def test_parse_errors(bad):
    with pytest.raises(HL7ParseError):
        parse(bad)


def test_latin1_bytes_tolerated():
    msg = parse("MSH|^~\\&|A\rPID|1||1||Müller\r".encode("latin-1"))
    assert msg.get("PID-5") == "Müller"
