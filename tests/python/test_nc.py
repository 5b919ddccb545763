"""Raw memcache over netcat: byte-identical to memcached for a fixed session."""

import pytest

from conftest import require, run

SESSIONS = [
    b"set nc:a 5 0 3\r\nabc\r\nget nc:a\r\nappend nc:a 0 0 1\r\nd\r\ngets nc:missing\r\nincr nc:a 1\r\n"
    b"delete nc:a\r\nget nc:a\r\nquit\r\n",
    b"set nc:n 0 0 2\r\n10\r\nincr nc:n 5\r\ndecr nc:n 100\r\nget nc:n\r\nfoo\r\nmn\r\nquit\r\n",
    b"ms nc:m 2 T0 F3\r\nhi\r\nmg nc:m v f s k\r\nmg nc:none v\r\nmd nc:m\r\nmn\r\nquit\r\n",
]


@pytest.mark.parametrize("session", SESSIONS)
def test_nc_session_matches_memcached(shoal_memcache, memcached_ref, session):
    nc = require("nc")
    outs = []
    for server in (memcached_ref, shoal_memcache):
        rc, out, err = run([nc, "-w", "5", "127.0.0.1", str(server.mc_port)], stdin=session)
        outs.append(out)
    assert outs[0].endswith(b"\r\n"), outs[0]
    assert outs[1] == outs[0]
