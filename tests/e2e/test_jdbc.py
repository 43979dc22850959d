"""pgjdbc (the JDBC driver of Metabase, DBeaver, Tableau, ...) and a Metabase replay against tarn.

The checks live in jdbc/: TarnJdbc.java (pgjdbc itself) and MetabaseReplay.java (what Metabase's
Postgres driver sends on connect, during sync and for queries), on a shared Harness.java. The
tests compile them once and run one case each, so every case passes or fails on its own. A case
prints one line per check ("ok ..." or "FAIL ...") and exits 0 only if all of them held.

Needs a JDK (javac, java) and pgjdbc: Debian's libpostgresql-jdbc-java puts it at
/usr/share/java/postgresql.jar (PGJDBC_JAR overrides). Without them the tests fail, they do not
skip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import start_tarn

JAR = os.environ.get("PGJDBC_JAR", "/usr/share/java/postgresql.jar")
SOURCES = sorted((Path(__file__).parent / "jdbc").glob("*.java"))
CASE_TIMEOUT = 600

# The cases of TarnJdbc.java; test_case_list_matches_java keeps the lists in step.
PGJDBC_CASES = [
    "connect",
    "dbmeta_product",
    "dbmeta_schemas_catalogs",
    "dbmeta_tables",
    "dbmeta_columns",
    "dbmeta_keys_indexes",
    "dbmeta_typeinfo",
    "dbmeta_functions",
    "prepared_threshold_default",
    "prepared_threshold_1",
    "prepared_threshold_0",
    "prepared_force_binary",
    "param_types",
    "param_types_binary",
    "fetch_size_portal",
    "max_rows",
    "result_types_text",
    "result_types_binary",
    "column_labels",
    "resultset_metadata",
    "simple_query_mode",
    "transactions",
    "error_in_transaction",
    "errors",
    "timezone",
]
# Writes: on an empty warehouse of their own.
DML_CASES = ["dml_batch"]
# These leave a long query behind if the server does not stop it, so each gets its own server.
CANCEL_CASES = ["cancel", "query_timeout"]
# Metabase's Postgres driver: connection set-up, then the sync queries, then query shapes.
METABASE_CASES = [
    "metabase_connect",
    "metabase_schemas_privileges",
    "metabase_tables",
    "metabase_fields",
    "metabase_fks",
    "metabase_indexes",
    "metabase_routines",
    "metabase_queries",
]


@pytest.fixture(scope="session")
def jdbc_classes(tmp_path_factory):
    """The compiled programs, or the reason they could not be built (each test then fails)."""
    javac, java = shutil.which("javac"), shutil.which("java")
    missing = [name for name, path in (("javac", javac), ("java", java)) if path is None]
    if missing:
        return None, (f"{' and '.join(missing)} not found: install a JDK "
                      "(Debian: default-jdk-headless) to run the pgjdbc tests")
    if not os.path.isfile(JAR):
        return None, (f"pgjdbc not found at {JAR}: install Debian's libpostgresql-jdbc-java "
                      "or set PGJDBC_JAR")
    out = tmp_path_factory.mktemp("jdbc-classes")
    r = subprocess.run([javac, "-cp", JAR, "-d", str(out), *map(str, SOURCES)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return None, f"javac failed:\n{r.stdout}{r.stderr}"
    return (java, out), None


def java_cmd(jdbc_classes, program, *args):
    built, error = jdbc_classes
    if built is None:
        pytest.fail(error)
    java, classes = built
    return [java, "-cp", f"{classes}{os.pathsep}{JAR}", program, *args]


def case_failure(jdbc_classes, t, case, program="TarnJdbc") -> str | None:
    """Runs one case; None if every check held, else what failed."""
    cmd = java_cmd(jdbc_classes, program, t.pg_host, str(t.pg_port), case)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=CASE_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return (f"case {case} did not finish within {CASE_TIMEOUT}s\n--- output ---\n{out}\n"
                f"--- tarn stderr (tail) ---\n{t.stderr()[-3000:]}")
    print(r.stdout)  # every check, shown by pytest on failure
    if r.returncode == 0 and f"PASSED {case}" in r.stdout:
        return None
    fails = [line for line in r.stdout.splitlines() if line.startswith("FAIL ")]
    return (f"case {case}: {len(fails)} failed check(s), exit code {r.returncode}\n"
            + "\n".join(fails)
            + (f"\n--- java stderr ---\n{r.stderr[-3000:]}" if r.stderr.strip() else ""))


def run_case(jdbc_classes, t, case, program="TarnJdbc"):
    failure = case_failure(jdbc_classes, t, case, program)
    assert failure is None, failure


@pytest.mark.parametrize("program, ours", [
    ("TarnJdbc", PGJDBC_CASES + DML_CASES + CANCEL_CASES),
    ("MetabaseReplay", METABASE_CASES),
])
def test_case_list_matches_java(jdbc_classes, program, ours):
    r = subprocess.run(java_cmd(jdbc_classes, program, "--list"), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == sorted(ours)


@pytest.mark.parametrize("case", PGJDBC_CASES)
def test_pgjdbc(tarn_demo, jdbc_classes, case):
    run_case(jdbc_classes, tarn_demo, case)


@pytest.mark.parametrize("case", DML_CASES)
def test_pgjdbc_writes(tarn, jdbc_classes, case):
    run_case(jdbc_classes, tarn, case)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_after(t, within: float = 30.0, window: float = 1.0, busy: float = 0.2) -> str | None:
    """None once tarn uses less than `busy` of a core over `window` s; else, after `within` s,
    how busy it still is."""
    deadline = time.monotonic() + within
    while True:
        before, start = _cpu_seconds(t.proc.pid), time.monotonic()
        time.sleep(window)  # the measuring window, not a wait for a condition
        used = (_cpu_seconds(t.proc.pid) - before) / (time.monotonic() - start)
        if used < busy:
            return None
        if time.monotonic() > deadline:
            return (f"tarn still uses {used:.2f} cores {within:.0f}s after the case ended: "
                    "the cancelled or timed-out queries keep running on the server")


@pytest.mark.parametrize("case", CANCEL_CASES)
def test_pgjdbc_cancel(tmp_path, jdbc_classes, case):
    java_cmd(jdbc_classes, "TarnJdbc")  # fails first if Java or pgjdbc is missing
    t = start_tarn(tmp_path / "warehouse", demo=True)
    try:
        failures = [case_failure(jdbc_classes, t, case), busy_after(t)]
    finally:
        t.kill()
    failures = [f for f in failures if f]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("case", METABASE_CASES)
def test_metabase(tarn_demo, jdbc_classes, case):
    run_case(jdbc_classes, tarn_demo, case, "MetabaseReplay")
