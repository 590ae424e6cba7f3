"""Patient Identity Feed [ITI-8]: ADT semantics, ACKs, and the MLLP listener over real loopback TCP."""

import asyncio
import shutil
import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

from registry import hl7v2
from registry.mllp import FrameDecoder, MLLPClient, MLLPError, frame, send_mllp, serve_mllp, stop_mllp
from registry.patient_feed import build_adt, handle_adt

DOMAIN = "1.3.6.1.4.1.21367.13.20.1000"
NATIONAL = "1.2.250.1.213.1.4.8"
PID_A = f"IHEBLUE-1^^^&{DOMAIN}&ISO"
PID_B = f"IHEBLUE-2^^^&{DOMAIN}&ISO"


class MemoryStore:
    """Test double of the registry's PatientStore (the lead implements the real one on the DB)."""

    def __init__(self, fail: bool = False):
        self.patients: dict[str, dict] = {}
        self.merges: list[tuple[str, str]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def upsert_patient(self, patient_id: str, demographics: dict) -> None:
        if self.fail:
            raise RuntimeError("database is down")
        with self.lock:
            self.patients[patient_id] = demographics

    def merge_patients(self, surviving_id: str, subsumed_id: str) -> int:
        with self.lock:
            self.merges.append((surviving_id, subsumed_id))
        return 2


def ack_of(reply: bytes) -> hl7v2.Message:
    msg = hl7v2.parse(reply)
    assert msg.segments[0].name == "MSH" and msg.segments[1].name == "MSA"
    return msg


# --- ADT semantics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event", ["A01", "A04", "A05", "A08"])
def test_upsert_events_store_canonical_id_and_demographics(event):
    store = MemoryStore()
    msg = build_adt(event, f"IHEBLUE-1^^^IHEBLUE&{DOMAIN}&ISO", name="Doe^Jane", birth_date="19800101", sex="F",
                    other_ids=[f"1800112345678^^^&{NATIONAL}&ISO", "MRN77^^^HOSP"], control_id="C-1")
    ack = ack_of(handle_adt(msg, store, domain_oid=DOMAIN))
    assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "C-1"
    assert ack.segment("ERR") is None
    assert store.patients == {PID_A: {
        "name": {"family": "Doe", "given": "Jane", "middle": "", "suffix": "", "prefix": ""},
        "birth_date": "19800101", "sex": "F",
        "other_ids": [f"1800112345678^^^&{NATIONAL}&ISO", "MRN77^^^HOSP"],
    }}


def test_domain_id_found_in_any_pid3_repetition_and_update_overwrites():
    store = MemoryStore()
    ids = [f"N1^^^&{NATIONAL}&ISO", PID_A]
    handle_adt(build_adt("A01", ids[0], other_ids=[ids[1]], name="Doe^J"), store, domain_oid=DOMAIN)
    assert list(store.patients) == [PID_A] and store.patients[PID_A]["other_ids"] == [ids[0]]
    handle_adt(build_adt("A08", PID_A, name="Doe^Jane", sex="F"), store, domain_oid=DOMAIN)
    assert store.patients[PID_A]["name"]["given"] == "Jane" and store.patients[PID_A]["sex"] == "F"


def test_without_domain_every_iso_id_is_a_patient():
    store = MemoryStore()
    ack = ack_of(handle_adt(build_adt("A04", PID_A, other_ids=[f"N1^^^&{NATIONAL}&ISO", "L1^^^LOCAL"]),
                            store, domain_oid=None))
    assert ack.get("MSA-1") == "AA"
    assert sorted(store.patients) == sorted([PID_A, f"N1^^^&{NATIONAL}&ISO"])
    assert store.patients[PID_A]["other_ids"] == [f"N1^^^&{NATIONAL}&ISO", "L1^^^LOCAL"]


def err_of(ack: hl7v2.Message) -> tuple[str, str, str, str]:
    """(MSA-1, ERR-2 location, ERR-3 code, ERR-8 text)."""
    err = ack.segment("ERR")
    assert err is not None, "an error ACK must carry an ERR segment"
    location = "-".join(p for p in (err.get(2, 1), err.get(2, 3)) if p)
    return ack.get("MSA-1"), location, err.get(3, 1), err.get(8)


def test_missing_pid3_is_application_error_naming_the_field():
    store = MemoryStore()
    msg = build_adt("A01", PID_A).replace(PID_A.encode(), b"")
    code, where, hl7_code, text = err_of(ack_of(handle_adt(msg, store, domain_oid=DOMAIN)))
    assert (code, where, hl7_code) == ("AE", "PID-3", "101") and "PID-3" in text
    assert store.patients == {}


def test_no_id_of_the_affinity_domain_is_application_error():
    store = MemoryStore()
    ack = ack_of(handle_adt(build_adt("A01", f"N1^^^&{NATIONAL}&ISO"), store, domain_oid=DOMAIN))
    code, where, hl7_code, text = err_of(ack)
    assert (code, where, hl7_code) == ("AE", "PID-3", "103") and DOMAIN in text and NATIONAL in text
    assert store.patients == {}


def test_missing_pid_segment_is_application_error():
    msg = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01^ADT_A01|X7|P|2.5\rEVN||20240101\r"
    code, where, hl7_code, _ = err_of(ack_of(handle_adt(msg, MemoryStore(), domain_oid=DOMAIN)))
    assert (code, where, hl7_code) == ("AE", "PID", "100")


def test_a40_merge_passes_surviving_and_subsumed_ids():
    store = MemoryStore()
    # MRG-1 with namespace and a second (national) repetition: only the domain id is merged
    prior = f"IHEBLUE-2^^^IHEBLUE&{DOMAIN}&ISO~OLD^^^&{NATIONAL}&ISO"
    msg = build_adt("A40", PID_A, prior_id="X", control_id="M-1").replace(b"MRG|X", b"MRG|" + prior.encode())
    ack = ack_of(handle_adt(msg, store, domain_oid=DOMAIN))
    assert ack.get("MSA-1") == "AA" and ack.get("MSA-2") == "M-1" and ack.get("MSH-9") == "ACK"
    assert ack.get("MSH-9.2") == "A40"
    assert store.merges == [(PID_A, PID_B)] and store.patients == {}


def test_a40_repeated_patient_group_and_errors():
    store = MemoryStore()
    msg = build_adt("A40", PID_A, prior_id=PID_B)
    second = f"PID|1||Y^^^&{DOMAIN}&ISO\rMRG|Z^^^&{DOMAIN}&ISO\r".encode()
    assert ack_of(handle_adt(msg + second, store, domain_oid=DOMAIN)).get("MSA-1") == "AA"
    assert store.merges == [(PID_A, PID_B), (f"Y^^^&{DOMAIN}&ISO", f"Z^^^&{DOMAIN}&ISO")]

    store = MemoryStore()
    no_mrg = msg.split(b"MRG|")[0]
    assert err_of(ack_of(handle_adt(no_mrg, store, domain_oid=DOMAIN)))[:3] == ("AE", "MRG", "100")
    other = build_adt("A40", PID_A, prior_id=f"OLD^^^&{NATIONAL}&ISO")
    code, where, hl7_code, text = err_of(ack_of(handle_adt(other, store, domain_oid=DOMAIN)))
    assert (code, where, hl7_code) == ("AE", "MRG-1", "103") and "MRG-1" in text
    # no domain configured: the prior id must have a surviving id of its own authority
    assert err_of(ack_of(handle_adt(other, store, domain_oid=None)))[1:3] == ("MRG-1", "103")
    assert store.merges == []


def test_ack_header_swaps_applications_and_echoes_control_id():
    msg = build_adt("A04", PID_A, sending=("PIX_SRC", "HOSP_A"), receiving=("XDS_REG", "AFFINITY"),
                    control_id="CTRL^42")  # a delimiter inside MSH-10 travels escaped
    req, ack = hl7v2.parse(msg), ack_of(handle_adt(msg, MemoryStore(), domain_oid=DOMAIN))
    assert [ack.get(f"MSH-{n}") for n in (3, 4, 5, 6)] == ["XDS_REG", "AFFINITY", "PIX_SRC", "HOSP_A"]
    assert [ack.get(f"MSH-9.{n}") for n in (1, 2, 3)] == ["ACK", "A04", "ACK"]
    assert ack.get("MSA-2") == req.get("MSH-10") == "CTRL^42"
    assert ack.get("MSH-10") and ack.get("MSH-10") != "CTRL^42" and ack.get("MSH-12") == "2.5"


@pytest.mark.parametrize("message, hl7_code, where", [
    (b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01^ORU_R01|X1|P|2.5\rPID|1||1^^^&1.2&ISO\r", "200", "MSH-9"),
    (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A03^ADT_A03|X1|P|2.5\rPID|1||1^^^&1.2&ISO\r", "201", "MSH-9"),
    (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01^ADT_A01||P|2.5\rPID|1||1^^^&1.2&ISO\r", "101", "MSH-10"),
    (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\rpid|1\r", "100", "MSH"),
    (b"this is not HL7", "100", "MSH"),
])
def test_rejections_are_ar_with_err(message, hl7_code, where):
    ack = ack_of(handle_adt(message, MemoryStore(), domain_oid=DOMAIN))
    code, location, got_code, text = err_of(ack)
    assert (code, location, got_code) == ("AR", where, hl7_code) and text
    if message.startswith(b"MSH"):  # the ACK is still addressed back to the sender
        assert ack.get("MSH-5") == "A" and ack.get("MSH-3") == "C"


def test_store_failure_is_application_error_207():
    code, _, hl7_code, text = err_of(ack_of(handle_adt(build_adt("A01", PID_A), MemoryStore(fail=True),
                                                       domain_oid=DOMAIN)))
    assert (code, hl7_code) == ("AE", "207") and "database is down" in text


def test_v231_sender_gets_err1_and_its_own_delimiters():
    msg = "MSH#*!%$#A#B#C#D#2024##ADT*A01#X2#P#2.3.1\rPID#1##9***$1.2$ISO\r".encode()
    reply = handle_adt(msg, MemoryStore(), domain_oid=DOMAIN)
    assert reply.startswith(b"MSH#*!%$#C#D#A#B#")
    ack = ack_of(reply)
    assert ack.get("MSA-1") == "AE" and ack.get("MSA-2") == "X2" and ack.get("MSH-12") == "2.3.1"
    err = ack.segment("ERR")
    assert (err.get(1, 1), err.get(1, 3), err.get(1, 4, 1)) == ("PID", "3", "103")


def test_build_adt_validates_arguments():
    with pytest.raises(ValueError):
        build_adt("A03", PID_A)
    with pytest.raises(ValueError):
        build_adt("A40", PID_A)


# --- MLLP framing -----------------------------------------------------------------------------------


def test_frame_decoder_partial_garbage_restart_and_oversize():
    dec = FrameDecoder(max_message_size=10)
    assert list(dec.feed(b"noise\r\n\x0bAB")) == [] and dec.pending
    assert list(dec.feed(b"C\x1c")) == []  # end block split between reads
    assert list(dec.feed(b"\r\n\x0bD\x1c\r\x0bE")) == [b"ABC", b"D"]
    assert list(dec.feed(b"\x0bF\x1c\r")) == [b"F"]  # abandoned frame "E" replaced by a new start block
    with pytest.raises(MLLPError):
        list(dec.feed(b"\x0b" + b"x" * 20))


# --- MLLP listener over loopback --------------------------------------------------------------------


class ServerThread:
    """An asyncio MLLP server on its own event loop thread, so tests can use blocking clients."""

    def __init__(self, handler, ssl_context=None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.run(serve_mllp("127.0.0.1", 0, handler, ssl=ssl_context))
        self.port = self.server.sockets[0].getsockname()[1]

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def stop(self):
        if self.loop.is_running():
            self.run(stop_mllp(self.server, timeout=5))
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


def recv_frame(sock: socket.socket) -> bytes:
    """Read one MLLP reply from a raw socket (replies may arrive in pieces)."""
    decoder = FrameDecoder()
    while True:
        data = sock.recv(65536)
        assert data, "server closed the connection before replying"
        for message in decoder.feed(data):
            return message


@pytest.fixture
def store():
    return MemoryStore()


@pytest.fixture
def server(store):
    srv = ServerThread(partial(handle_adt, store=store, domain_oid=DOMAIN))
    yield srv
    srv.stop()


def test_several_messages_on_one_connection(server, store):
    msgs = [build_adt("A01", f"P{i}^^^&{DOMAIN}&ISO", control_id=f"C{i}") for i in range(5)]
    with MLLPClient("127.0.0.1", server.port) as client:
        assert ack_of(client.request(msgs[0])).get("MSA-2") == "C0"
        client.sock.sendall(b"".join(frame(m) for m in msgs[1:]))  # pipelined in a single write
        assert [ack_of(client.receive()).get("MSA-2") for _ in msgs[1:]] == ["C1", "C2", "C3", "C4"]
    assert len(store.patients) == 5


def test_message_split_across_tcp_writes_and_garbage_before_frame(server, store):
    data = b"\r\nGET / HTTP/1.0\r\n" + frame(build_adt("A04", PID_A, control_id="SPLIT"))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 7):
            sock.sendall(data[i : i + 7])
            time.sleep(0.002)
        assert ack_of(recv_frame(sock)).get("MSA-2") == "SPLIT"
    assert PID_A in store.patients


def test_two_concurrent_clients(server, store):
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        first = frame(build_adt("A01", PID_A, control_id="SLOW"))
        slow.sendall(first[:40])  # a half-sent frame must not block other clients
        assert ack_of(send_mllp("127.0.0.1", server.port, build_adt("A01", PID_B))).get("MSA-1") == "AA"
        with ThreadPoolExecutor(2) as pool:
            acks = list(pool.map(lambda i: send_mllp("127.0.0.1", server.port, build_adt(
                "A04", f"T{i}^^^&{DOMAIN}&ISO", control_id=f"T{i}")), range(6)))
        assert [ack_of(a).get("MSA-2") for a in acks] == [f"T{i}" for i in range(6)]
        slow.sendall(first[40:])
        assert ack_of(recv_frame(slow)).get("MSA-2") == "SLOW"
    finally:
        slow.close()
    assert len(store.patients) == 8


def test_oversized_frame_closes_connection_but_server_survives(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        try:
            sock.sendall(b"\x0b" + b"A" * (1024 * 1024 + 10))
            closed = sock.recv(100) == b""
        except (ConnectionResetError, BrokenPipeError):
            closed = True
        assert closed
    assert ack_of(send_mllp("127.0.0.1", server.port, build_adt("A01", PID_A))).get("MSA-1") == "AA"


def test_non_adt_over_mllp_is_rejected_with_err(server, store):
    oru = b"MSH|^~\\&|LAB|H|REG|A|20240101||ORU^R01^ORU_R01|R1|P|2.5\rOBR|1\r"
    code, where, hl7_code, text = err_of(ack_of(send_mllp("127.0.0.1", server.port, oru)))
    assert (code, where, hl7_code) == ("AR", "MSH-9", "200") and "ORU" in text
    # the connection-level garbage case: a frame that is not HL7 still gets an AR, not a hang-up
    assert err_of(ack_of(send_mllp("127.0.0.1", server.port, b"\x00\x01junk")))[:3] == ("AR", "MSH", "100")
    assert store.patients == {}


def test_graceful_shutdown_answers_in_flight_message_then_closes():
    started = threading.Event()

    def slow_handler(message: bytes) -> bytes:
        started.set()
        time.sleep(0.3)
        return handle_adt(message, MemoryStore(), domain_oid=DOMAIN)

    srv = ServerThread(slow_handler)
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    busy = MLLPClient("127.0.0.1", srv.port)
    try:
        busy.send(build_adt("A01", PID_A, control_id="INFLIGHT"))
        assert started.wait(5)
        srv.stop()
        assert ack_of(busy.receive()).get("MSA-2") == "INFLIGHT"
        with pytest.raises(MLLPError):
            busy.receive()
        assert idle.recv(10) == b""
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    finally:
        idle.close()
        busy.close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI needed to make a test certificate")
def test_mllp_over_tls(tmp_path, store):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    srv = ServerThread(partial(handle_adt, store=store, domain_oid=DOMAIN), ssl_context=server_ctx)
    try:
        reply = send_mllp("127.0.0.1", srv.port, build_adt("A01", PID_A), ssl_context=client_ctx)
        assert ack_of(reply).get("MSA-1") == "AA" and PID_A in store.patients
    finally:
        srv.stop()
