"""Fixtures that start shoal-server (release binary) and reference servers on free ports.

Missing programs are a failure, not a skip: run scripts/install-test-deps.sh.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "run `bash scripts/install-test-deps.sh`"
READY_TIMEOUT = 10.0
_handed_out = set()


def free_port():
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("no free port")


def require(prog):
    path = shutil.which(prog) or next(
        (p for p in (f"/usr/sbin/{prog}", f"/sbin/{prog}") if os.access(p, os.X_OK)), None
    )
    if not path:
        pytest.fail(f"`{prog}` is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def shoal_bin():
    env = os.environ.get("SHOAL_SERVER_BIN")
    if env:
        return Path(env)
    tdir = os.environ.get("CARGO_TARGET_DIR")
    if tdir and (Path(tdir) / "release/shoal-server").is_file():
        return Path(tdir) / "release/shoal-server"
    return ROOT / "target/release/shoal-server"


def probe(port, request, expect):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(request)
            got = b""
            while len(got) < len(expect):
                chunk = s.recv(256)
                if not chunk:
                    break
                got += chunk
            return got.startswith(expect)
    except OSError:
        return False


def resp_ready(port):
    return probe(port, b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n")


def mc_ready(port):
    return probe(port, b"version\r\n", b"VERSION ")


class Server:
    """A child server process; `ports` maps protocol name -> port."""

    def __init__(self, name, argv, ports, checks):
        self.name = name
        self.ports = ports
        self.log = tempfile.NamedTemporaryFile(prefix=f"shoal-pytest-{name}-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        delay = 0.005
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode} before ready:\n{self.log_text()}")
            if all(check(port) for check, port in checks):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} not ready after {READY_TIMEOUT}s:\n{self.log_text()}")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def log_text(self):
        try:
            return Path(self.log.name).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    @property
    def port(self):
        return self.ports.get("resp") or self.ports["memcache"]

    @property
    def mc_port(self):
        return self.ports["memcache"]


def start_shoal():
    binary = shoal_bin()
    if not binary.is_file():
        pytest.fail(f"shoal-server not found at {binary}: build with `cargo build --release --bins`", pytrace=False)
    port, mc = free_port(), free_port()
    argv = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--memcache-port", str(mc),
            "--metrics-port", "0", "--threads", "2"]
    # Only the RESP side gates start-up; memcache readiness is checked by `shoal_memcache`,
    # so RESP tests are not blocked by a memcache listener that does not answer yet.
    return Server("shoal-server", argv, {"resp": port, "memcache": mc}, [(resp_ready, port)])


def start_redis():
    port = free_port()
    argv = [require("redis-server"), "--port", str(port), "--save", "", "--appendonly", "no",
            "--bind", "127.0.0.1", "--daemonize", "no", "--logfile", ""]
    return Server("redis-server", argv, {"resp": port}, [(resp_ready, port)])


def start_memcached():
    port = free_port()
    argv = [require("memcached"), "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-t", "1"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    return Server("memcached", argv, {"memcache": port}, [(mc_ready, port)])


class Pair:
    """Stand-in for shoal (SHOAL_DIFF_TARGET=reference): redis-server + memcached."""

    def __init__(self):
        self.redis = start_redis()
        self.memcached = start_memcached()
        self.name = "redis-server+memcached"
        self.ports = {"resp": self.redis.port, "memcache": self.memcached.mc_port}

    port = Server.port
    mc_port = Server.mc_port

    def stop(self):
        self.redis.stop()
        self.memcached.stop()


@pytest.fixture(scope="session")
def shoal():
    """shoal-server; with SHOAL_DIFF_TARGET=reference a redis-server + memcached pair, which
    is how these tests are checked against the reference servers themselves."""
    server = Pair() if os.environ.get("SHOAL_DIFF_TARGET") == "reference" else start_shoal()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shoal_memcache(shoal):
    """shoal (same process) once its memcache port answers `version` (bounded wait)."""
    if not hasattr(shoal, "mc_ok"):
        deadline = time.monotonic() + READY_TIMEOUT
        shoal.mc_ok = mc_ready(shoal.mc_port)
        while not shoal.mc_ok and time.monotonic() < deadline:
            time.sleep(0.05)
            shoal.mc_ok = mc_ready(shoal.mc_port)
    if not shoal.mc_ok:
        pytest.fail(f"shoal memcache port {shoal.mc_port} does not answer `version`", pytrace=False)
    return shoal


@pytest.fixture(scope="session")
def redis_ref():
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def memcached_ref():
    server = start_memcached()
    yield server
    server.stop()


@pytest.fixture(params=["shoal", "redis"])
def any_resp(request):
    """Runs a test against shoal-server and against redis-server (sanity of the test)."""
    return request.getfixturevalue("shoal" if request.param == "shoal" else "redis_ref")


@pytest.fixture(params=["shoal", "memcached"])
def any_mc(request):
    """Runs a test against shoal-server and against memcached."""
    return request.getfixturevalue("shoal_memcache" if request.param == "shoal" else "memcached_ref")


def run(argv, stdin=b"", timeout=20):
    """Runs a command line tool, returning (rc, stdout bytes, stderr bytes)."""
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------------------------------
# shoal-proxy fixtures (used by test_proxy.py)
#
# One session-wide proxy in front of four pools:
#   shoal_redis  RESP pool over 3 shoal-server shards (hash_tag "{}")
#   shoal_mc     memcache pool over the same 3 shards' memcache ports (same names, same
#                order: the same ring, so a key lives on the same shard in both pools)
#   redis        RESP pool over 3 redis-servers
#   mc           memcache pool over 3 memcacheds
# ---------------------------------------------------------------------------------------

SHARDS = 3


def proxy_bin():
    env = os.environ.get("SHOAL_PROXY_BIN")
    if env:
        return Path(env)
    return shoal_bin().with_name("shoal-proxy")


def start_shoal_shard():
    """A shoal-server shard (one worker thread), ready on both its RESP and memcache ports."""
    binary = shoal_bin()
    if not binary.is_file():
        pytest.fail(f"shoal-server not found at {binary}: build with `cargo build --release --bins`", pytrace=False)
    port, mc = free_port(), free_port()
    argv = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--memcache-port", str(mc),
            "--metrics-port", "0", "--threads", "1"]
    return Server("shoal-shard", argv, {"resp": port, "memcache": mc}, [(resp_ready, port), (mc_ready, mc)])


def start_redis_shard():
    """A redis-server with its own empty working directory (so it neither loads nor writes
    a dump.rdb of the current directory)."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="shoal-pytest-redis-")
    argv = [require("redis-server"), "--port", str(port), "--save", "", "--appendonly", "no",
            "--bind", "127.0.0.1", "--daemonize", "no", "--logfile", "", "--dir", workdir]
    server = Server("redis-server", argv, {"resp": port}, [(resp_ready, port)])
    server.workdir = workdir
    return server


def _servers_yaml(addrs):
    return "".join(f"    - 127.0.0.1:{port}:1 shard{i}\n" for i, port in enumerate(addrs))


class ProxyCluster:
    """The proxy, its four pool ports (`ports[pool]`) and the servers behind each pool
    (`shards[pool]`, each a Server whose `port`/`mc_port` reach it directly)."""

    POOLS = ("shoal_redis", "shoal_mc", "redis", "mc")

    def __init__(self):
        self.children = []
        try:
            self.shoal = [self._own(start_shoal_shard()) for _ in range(SHARDS)]
            self.redis = [self._own(start_redis_shard()) for _ in range(SHARDS)]
            self.memcached = [self._own(start_memcached()) for _ in range(SHARDS)]
            self.ports = {name: free_port() for name in self.POOLS}
            self.shards = {"shoal_redis": self.shoal, "shoal_mc": self.shoal,
                           "redis": self.redis, "mc": self.memcached}
            self.config_text = self._yaml()
            self.config = tempfile.NamedTemporaryFile("w", prefix="shoal-proxy-", suffix=".yml", delete=False)
            self.config.write(self.config_text)
            self.config.close()
            self.proxy = self._start_proxy()
        except BaseException:
            self.stop()
            raise

    def _own(self, server):
        self.children.append(server)
        return server

    def _yaml(self):
        p = self.ports
        return (
            f"shoal_redis:\n  listen: 127.0.0.1:{p['shoal_redis']}\n  hash: fnv1a_64\n"
            f"  distribution: ketama\n  hash_tag: \"{{}}\"\n  redis: true\n  backend: shoal\n"
            f"  servers:\n{_servers_yaml([s.port for s in self.shoal])}"
            f"shoal_mc:\n  listen: 127.0.0.1:{p['shoal_mc']}\n  hash: fnv1a_64\n"
            f"  distribution: ketama\n  redis: false\n  backend: shoal\n"
            f"  servers:\n{_servers_yaml([s.mc_port for s in self.shoal])}"
            f"redis:\n  listen: 127.0.0.1:{p['redis']}\n  hash: fnv1a_64\n"
            f"  distribution: ketama\n  hash_tag: \"{{}}\"\n  redis: true\n"
            f"  servers:\n{_servers_yaml([s.port for s in self.redis])}"
            f"mc:\n  listen: 127.0.0.1:{p['mc']}\n  hash: fnv1a_64\n"
            f"  distribution: ketama\n"
            f"  servers:\n{_servers_yaml([s.mc_port for s in self.memcached])}"
        )

    def _start_proxy(self):
        binary = proxy_bin()
        if not binary.is_file():
            pytest.fail(f"shoal-proxy not found at {binary}: build with `cargo build --release --bins`", pytrace=False)
        checks = [(resp_ready if name in ("shoal_redis", "redis") else mc_ready, port)
                  for name, port in self.ports.items()]
        argv = [str(binary), "-c", self.config.name, "--threads", "2"]
        return self._own(Server("shoal-proxy", argv, dict(self.ports), checks))

    def is_redis(self, pool):
        return pool in ("shoal_redis", "redis")

    def stop(self):
        for server in reversed(self.children):
            try:
                server.stop()
            except Exception:  # keep stopping the others
                pass
        self.children = []
        for server in getattr(self, "redis", []):
            shutil.rmtree(server.workdir, ignore_errors=True)
        config = getattr(self, "config", None)
        if config is not None:
            try:
                os.unlink(config.name)
            except OSError:
                pass


@pytest.fixture(scope="session")
def proxy():
    """shoal-proxy with its four pools (see ProxyCluster); everything is killed at the end."""
    cluster = ProxyCluster()
    yield cluster
    cluster.stop()


def tcp_ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def nutcracker(proxy):
    """twemproxy (nutcracker 0.5.0) with the proxy's `redis` and `mc` pools: same servers,
    names and hashing, on its own ports (`ports["redis"]`, `ports["mc"]`)."""
    ports = {"redis": free_port(), "mc": free_port()}
    text = (
        f"redis:\n  listen: 127.0.0.1:{ports['redis']}\n  hash: fnv1a_64\n  distribution: ketama\n"
        f"  hash_tag: \"{{}}\"\n  redis: true\n"
        f"  servers:\n{_servers_yaml([s.port for s in proxy.redis])}"
        f"mc:\n  listen: 127.0.0.1:{ports['mc']}\n  hash: fnv1a_64\n  distribution: ketama\n"
        f"  servers:\n{_servers_yaml([s.mc_port for s in proxy.memcached])}"
    )
    conf = tempfile.NamedTemporaryFile("w", prefix="nutcracker-", suffix=".yml", delete=False)
    conf.write(text)
    conf.close()
    argv = [require("nutcracker"), "-c", conf.name, "-s", str(free_port()), "-a", "127.0.0.1",
            "-p", conf.name + ".pid"]
    try:
        # twemproxy answers no `version`: a listener that accepts is ready.
        server = Server("nutcracker", argv, ports, [(tcp_ready, p) for p in ports.values()])
        yield server
        server.stop()
    finally:
        for path in (conf.name, conf.name + ".pid"):
            try:
                os.unlink(path)
            except OSError:
                pass
