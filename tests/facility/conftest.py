"""A real facility for the queueserver tests: redis-server, the catalog (Tiled, on a real
PostgreSQL server when one can be run here) and a re-manager with profile_collection and the
twin, started once for the module.

redis-server and PostgreSQL come from the Debian packages (``.ci/run`` installs them when
missing). Without redis-server the tests skip, saying so; without PostgreSQL the catalog is
the embedded SQLite one and only the PostgreSQL test skips. Where they must run (CI:
``.ci/run`` sets ``OPHYD_STEM_REQUIRE_SERVICES=1``) a missing service fails those tests
instead: a skipped facility test must not pass for a tested one.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

from ophyd_stem.app.facility import Facility, FacilityConfig


def missing_service(reason: str) -> None:
    """Skip, saying why; fail instead where the services are required (CI)."""
    if os.environ.get("OPHYD_STEM_REQUIRE_SERVICES", "") not in ("", "0"):
        pytest.fail(f"{reason} (OPHYD_STEM_REQUIRE_SERVICES is set: these tests must run here)")
    pytest.skip(reason)


def needs_redis() -> None:
    if shutil.which("redis-server") is None:
        missing_service(
            "redis-server is not installed (apt-get install redis-server; .ci/run does it): "
            "the queueserver needs a real Redis"
        )


def quiet_environment(tmp: os.PathLike) -> dict[str, str]:
    """What the re-manager's worker gets: no user configuration file, headless figures."""
    return {
        "OPHYD_STEM_CONFIG": os.path.join(tmp, "no-config.toml"),
        "MPLBACKEND": "Agg",
        "PYTHONWARNINGS": "ignore",
    }


def _postgres_binaries() -> Optional[Path]:
    """A folder with initdb, pg_ctl, createdb and psql: Debian's, else the PATH's."""
    tools = ("initdb", "pg_ctl", "createdb", "psql")
    candidates = [Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))]
    if shutil.which("initdb"):
        candidates.insert(0, Path(shutil.which("initdb")).parent)
    for folder in reversed(candidates):
        if all((folder / tool).exists() for tool in tools):
            return folder
    return None


class PostgreSQL:
    """A throw-away PostgreSQL server on a free loopback port (trust authentication).

    PostgreSQL refuses to run as root: as root it runs as the ``postgres`` user that the
    Debian package creates.
    """

    def __init__(self, bin_dir: Path, folder: Path, user: Optional[str]) -> None:
        self.bin_dir, self.folder, self.user = bin_dir, folder, user
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.data = folder / "pgdata"
        self.uri = f"postgresql://stem@127.0.0.1:{self.port}/ophyd_stem"

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        return subprocess.run(
            [*prefix, str(self.bin_dir / command[0]), *command[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start(self) -> "PostgreSQL":
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        for command in (
            ("initdb", "-D", str(self.data), "-A", "trust", "-U", "stem", "--no-sync"),
            (
                "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "postgres.log"), "-w",
                "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1",
                "start",
            ),
            ("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "stem", "ophyd_stem"),
        ):  # fmt: skip
            result = self._run(*command)
            if result.returncode != 0:
                raise RuntimeError(f"{command[0]} failed: {result.stdout}{result.stderr}")
        return self

    def query(self, sql: str) -> str:
        result = self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "stem", "-d", "ophyd_stem",
            "-tAc", sql,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A PostgreSQL server for the catalog, or the reason there is none (a string)."""
    bin_dir = _postgres_binaries()
    if bin_dir is None:
        yield "PostgreSQL is not installed (apt-get install postgresql; .ci/run does it)"
        return
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            yield "PostgreSQL refuses to run as root and there is no 'postgres' user to run it"
            return
    folder = Path("/tmp") / f"ophyd-stem-pg-{os.getpid()}-{time.monotonic_ns()}"
    server = PostgreSQL(bin_dir, folder, user)
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        yield f"PostgreSQL did not start: {exc}"
        return
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def facility(tmp_path_factory, postgres):
    """Redis, the catalog (on PostgreSQL when there is one) and a re-manager (plain worker,
    the twin's graphene inside it), on free loopback ports; stopped, every process, at the end
    of the module."""
    needs_redis()
    tmp = tmp_path_factory.mktemp("facility")
    config = FacilityConfig(
        data_dir=tmp / "data",
        catalog_database=None if isinstance(postgres, str) else postgres.uri,
        catalog_port=0,
        redis_port=0,
        control_port=0,
        info_port=0,
        sample="graphene",
        operator="facility-test",
        env=quiet_environment(tmp),
    )
    started = time.monotonic()
    facility = Facility(config).start(timeout=400)
    facility.startup_seconds = time.monotonic() - started
    try:
        yield facility
    finally:
        facility.stop()


@pytest.fixture(scope="module")
def queue(facility):
    from ophyd_stem.app.queue import QueueClient

    with QueueClient(facility.control_address, user="facility-test", timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def catalog(facility):
    from ophyd_stem.catalog import open_catalog

    client = open_catalog(facility.catalog_uri, facility.api_key)
    yield client
    client.context.close()


def complete_run(catalog, uid: str, timeout: float = 120.0):
    """The run, once the catalog holds its stop document (the worker's writer is
    asynchronous: it may be a moment behind the RunEngine)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            run = catalog[uid]
            stop = run.metadata.get("stop")
            if stop:
                return run
        except KeyError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"run {uid} is not complete in the catalog after {timeout} s")
        time.sleep(0.5)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(autouse=True)
def facility_logs_when_failed(request):
    """A failed facility test prints the ends of its processes' logs (the re-manager's holds
    a failed plan's traceback), which CI shows and a re-run may not reproduce."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed or "facility" not in request.fixturenames:
        return
    for piece in request.getfixturevalue("facility").pieces:
        print(f"----- the end of the {piece.name}'s log ({piece.log}) -----")
        print(piece.tail(8000 if piece.name == "re-manager" else 2000))
