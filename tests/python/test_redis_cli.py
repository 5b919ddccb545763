"""redis-cli against shoal-server; output compared with the same against redis-server."""

import pytest

from conftest import require, run


def cli(server, *args, stdin=b""):
    rc, out, err = run([require("redis-cli"), "-h", "127.0.0.1", "-p", str(server.port), *args], stdin=stdin)
    return rc, out, err


def test_argv_commands(any_resp):
    assert cli(any_resp, "SET", "cli:a", "b")[1] == b"OK\n"
    assert cli(any_resp, "GET", "cli:a")[1] == b"b\n"
    assert cli(any_resp, "DEL", "cli:a")[1] == b"1\n"
    assert cli(any_resp, "PING")[1] == b"PONG\n"


def test_stdin_commands_match_redis(shoal, redis_ref):
    script = (
        b"DEL cli:n cli:s\nSET cli:n 1\nINCR cli:n\nINCRBY cli:n 10\nGET cli:n\n"
        b'SET cli:s "hello world"\nGETRANGE cli:s 0 4\nMGET cli:n cli:missing cli:s\n'
        b"EXISTS cli:n cli:s\nTTL cli:n\nFOO bar\nGET\n"
    )
    outs = [cli(s, stdin=script) for s in (redis_ref, shoal)]
    assert outs[1][1] == outs[0][1]


@pytest.mark.parametrize(
    "cmd",
    [
        ["SET", "cli:k", "v"],
        ["GET", "cli:k"],
        ["GET", "cli:missing"],
        ["INCR", "cli:i"],
        ["MGET", "cli:k", "cli:missing", "cli:i"],
        ["APPEND", "cli:k", "more"],
        ["GETRANGE", "cli:k", "0", "-1"],
        ["EXISTS", "cli:k", "cli:i"],
        ["TTL", "cli:k"],
        ["TYPE", "cli:k"],
        ["KEYS", "cli:none*"],
        ["INCR", "cli:k"],
        ["FOO"],
        ["SET", "cli:k"],
        ["DEL", "cli:k", "cli:i"],
    ],
)
def test_no_raw_output_matches_redis(shoal, redis_ref, cmd):
    outs = [cli(s, "--no-raw", *cmd) for s in (redis_ref, shoal)]
    assert outs[1][:2] == outs[0][:2], f"redis-cli --no-raw {' '.join(cmd)}"


def test_no_raw_pipe_matches_redis(shoal, redis_ref):
    script = b"SET cli:p 5\nINCRBYFLOAT cli:p 0.25\nGET cli:p\nMGET cli:p cli:nope\nDEL cli:p\n"
    outs = [cli(s, "--no-raw", stdin=script) for s in (redis_ref, shoal)]
    assert outs[1][1] == outs[0][1]
