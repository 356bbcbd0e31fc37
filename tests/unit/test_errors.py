"""libvirt errors turned into sentences an operator understands."""

from __future__ import annotations

import pytest

from xencenter_lite.core.errors import ABORTED, FriendlyError, friendly


@pytest.mark.parametrize(("code", "raw", "words"), [
    (38, "cannot write to '/srv/x.qcow2': No space left on device", "ran out of space"),
    (1, "qemu-img: error while writing: ENOSPC", "ran out of space"),
    (9, "operation aborted: migration out job: canceled by client", "cancelled"),
    (38, "unable to connect to server at 'h:16509': Connection refused",
     "h:16509 refused the connection: libvirt does not listen"),
    (38, "unable to connect: No route to host", "chosen network"),
    (38, "Network is unreachable", "chosen network"),
    (38, "Cannot write data: Broken pipe", "connection to the destination was lost"),
    (38, "Connection reset by peer", "connection to the destination was lost"),
    (38, "End of file while reading data: Input/output error", "connection to a server"),
    (38, "Cannot recv data: Input/output error", "connection to a server"),
    (1, "internal error: connection closed due to keepalive timeout", "stopped answering"),
    (68, "Timed out during operation: cannot acquire state change lock", "did not answer"),
    (55, "Requested operation is not valid: domain is not running", "VM is not running"),
    (55, "Attempt to migrate guest to the same host 1234", "own server"),
    (1, "internal error: Not enough memory", "Not enough memory on the destination"),
    (1, "cannot allocate memory", "Not enough memory on the destination"),
])
def test_message_texts(code, raw, words):
    err = friendly(code, raw)
    assert words in err.message
    assert err.raw == raw and err.code == code


@pytest.mark.parametrize(("code", "words"), [
    (ABORTED, "cancelled"),
    (42, "no longer exists"),
    (55, "not in a state"),
    (38, "could not be reached"),
    (39, "connection to a server broke"),
    (45, "credentials"),
    (68, "did not answer in time"),
    (81, "unsafe"),
    (91, "CPU"),
    (87, "busy"),
    (90, "already exists in the destination SR"),
    (49, "SR (storage pool)"),
    (50, "volume"),
    (67, "does not support this VM"),
    (84, "does not support this operation"),
])
def test_codes(code, words):
    err = friendly(code, "something odd happened")
    assert words in err.message
    assert err.raw == "something odd happened"


def test_aborted_is_78():
    assert ABORTED == 78
    assert friendly(78, "").message == "The operation was cancelled."


def test_text_wins_over_code():
    # a system error (38) whose text says what really happened
    assert friendly(38, "No space left on device").message == \
        "The destination SR ran out of space."


def test_text_match_ignores_case():
    assert "ran out of space" in friendly(None, "NO SPACE LEFT ON DEVICE").message


def test_without_a_sentence_of_ours_libvirts_own_reason_is_said_plainly():
    err = friendly(12345, "weird failure 42")
    assert err == FriendlyError("The server said: Weird failure 42.", "weird failure 42", 12345)
    assert friendly(None, "").message == "The server reported an error (see details)."
    # The kind of error, then libvirt's reason without its kind-of-error prefixes.
    err = friendly(67, "unsupported configuration: USB controller model 'qemu-xhci' not "
                       "supported\nsecond line")
    assert err.message == ("The destination does not support this VM's configuration. The "
                           "server said: USB controller model 'qemu-xhci' not supported.")
    assert "second line" in err.raw and "second line" not in err.message
    long = friendly(1, "internal error: " + "x" * 500).message
    assert long.startswith("The server said: Xxx") and long.endswith("…") and len(long) < 340


def test_context_prefixes_the_message():
    err = friendly(78, "x", context="Migrating 'web-1'")
    assert err.message == "Migrating 'web-1': The operation was cancelled."
    assert err.raw == "x"


# What libvirt 9.0 said, on this machine, when a server could not be reached (the lab's
# servers over qemu+ssh, each case made for real: tests/integration/test_transports.py).
REACHING = [
    ("Cannot recv data: No ED25519 host key is known for 10.243.1.11 and you have requested "
     "strict checking.\r\nHost key verification failed.: Connection reset by peer",
     "ssh does not know the host key of 10.243.1.11: connect once with ssh"),
    ("Cannot recv data: @@@\r\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n"
     "Host key for 10.243.1.11 has changed and you have requested strict checking.\r\nHost "
     "key verification failed.: Connection reset by peer",
     "The ssh host key of 10.243.1.11 has changed"),
    ("Cannot recv data: nobody@10.243.1.11: Permission denied (publickey).: Connection reset "
     "by peer",
     "10.243.1.11 refused the ssh login as nobody (it accepts: publickey): add your public "
     "key"),
    ("Cannot recv data: ssh: connect to host 10.243.1.99 port 22: No route to host: "
     "Connection reset by peer", "10.243.1.99 cannot be reached (no route to host)"),
    ("Cannot recv data: ssh: Could not resolve hostname no-such-host.invalid: Name or service "
     "not known: Connection reset by peer", "The name no-such-host.invalid does not resolve"),
    ("Cannot recv data: ssh: connect to host 10.243.1.254 port 22: Connection refused: "
     "Connection reset by peer", "10.243.1.254 refused ssh on port 22: is sshd running"),
    ("Failed to connect socket to '/nonexistent': No such file or directory",
     "libvirt is not running there: there is no socket at /nonexistent"),
    ("End of file while reading data: sh: 1: nc: not found: Input/output error",
     "neither virt-ssh-helper nor nc"),
    ("Cannot read CA certificate '/etc/pki/CA/cacert.pem': No such file or directory",
     "no TLS certificates for libvirt (/etc/pki/CA/cacert.pem is missing)"),
    ("authentication failed: All provided authentication methods with credentials were "
     "rejected by the server", "refused the ssh login"),
]


@pytest.mark.parametrize(("raw", "words"), REACHING)
def test_why_a_server_cannot_be_reached_is_said_with_what_to_do(raw, words):
    message = friendly(38, raw).message
    assert words in message, message
    assert "connection to the destination was lost" not in message


def test_a_call_whose_connection_broke_is_told_from_a_refusal() -> None:
    from xencenter_lite.core.errors import STOPPED_ANSWERING, connection_lost

    for code, raw in ((38, "End of file while reading data: Input/output error"),
                      (1, "internal error: client socket is closed"),
                      (1, "internal error: connection closed due to keepalive timeout"),
                      (39, "rpc error"), (None, STOPPED_ANSWERING),
                      (None, "not connected to lab-a1 (the worker of lab-a1 is retired)")):
        assert connection_lost(code, raw), raw
    for code, raw in ((55, "Requested operation is not valid: domain is not running"),
                      (1, "internal error: injected failure of migrate"),
                      (9, "operation failed: migration job: unexpectedly failed")):
        assert not connection_lost(code, raw), raw
