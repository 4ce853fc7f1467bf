"""Each check type against real local targets: HTTP and gRPC servers, a log file, the database, Redis."""

from __future__ import annotations

import shutil
import threading

import pytest

from apps.health.checks import REGISTRY
from apps.health.checks.base import CheckContext
from apps.health.models import CheckStatus
from tests.health.targets import NOT_SERVING, SERVING, grpc_health_server, http_server


def run(type_: str, params: dict, *, timeout: float = 2.0, state: dict | None = None, check_id: int = 1,
        grace: float = 0.0):
    ctx = CheckContext(check_id=check_id, name="c", params=params, timeout_s=timeout, grace_period_s=grace,
                       state=state or {}, lease_token="t")
    return REGISTRY[type_](ctx).run()


# HTTP -------------------------------------------------------------------------------------------

def test_http_expected_status_and_body():
    with http_server() as (server, url):
        assert run("http", {"url": f"{url}/"}).status == CheckStatus.SUCCESS
        failed = run("http", {"url": f"{url}/status/503"})
        assert failed.status == CheckStatus.FAILURE and "503" in failed.message
        accepted = run("http", {"url": f"{url}/status/503", "expected_status": [503]})
        assert accepted.status == CheckStatus.SUCCESS
        assert run("http", {"url": f"{url}/", "body_regex": "hel+o"}).status == CheckStatus.SUCCESS
        mismatch = run("http", {"url": f"{url}/", "body_regex": "^bye"})
        assert mismatch.status == CheckStatus.FAILURE and "does not match" in mismatch.message
        assert server.hits.count("/") == 3


def test_http_unreachable_raises_so_the_runner_records_an_error():
    with http_server() as (_, url):
        pass  # closed again: nothing listens on that port now
    import httpx

    with pytest.raises(httpx.ConnectError):
        run("http", {"url": f"{url}/"})


# gRPC -------------------------------------------------------------------------------------------

def test_grpc_health_protocol_serving_and_not_serving():
    with grpc_health_server() as (servicer, target):
        servicer.set("", SERVING)
        servicer.set("casehub.Search", NOT_SERVING)
        ok = run("grpc", {"target": target})
        assert ok.status == CheckStatus.SUCCESS and ok.message == "SERVING"
        down = run("grpc", {"target": target, "service": "casehub.Search"})
        assert down.status == CheckStatus.FAILURE and down.message == "NOT_SERVING"
        unknown = run("grpc", {"target": target, "service": "nope"})
        assert unknown.status == CheckStatus.FAILURE and "NOT_FOUND" in unknown.message
        servicer.set("casehub.Search", SERVING)
        assert run("grpc", {"target": target, "service": "casehub.Search"}).status == CheckStatus.SUCCESS


def test_grpc_server_gone_is_a_failure():
    with grpc_health_server() as (_, target):
        pass
    gone = run("grpc", {"target": target}, timeout=0.5)
    assert gone.status == CheckStatus.FAILURE
    assert "UNAVAILABLE" in gone.message or "DEADLINE_EXCEEDED" in gone.message


# TCP --------------------------------------------------------------------------------------------

def test_tcp_connect():
    with http_server() as (server, _):
        port = server.server_address[1]
        assert run("tcp", {"host": "127.0.0.1", "port": port}).status == CheckStatus.SUCCESS
    closed = run("tcp", {"host": "127.0.0.1", "port": port})
    assert closed.status == CheckStatus.FAILURE and "cannot connect" in closed.message


# Log grep ---------------------------------------------------------------------------------------

def test_log_grep_threshold_window_offset_and_partial_lines(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("INFO start\nERROR one\n")
    params = {"path": str(log), "pattern": "ERROR", "threshold": 2, "window_s": 600, "start": "beginning"}
    first = run("log_grep", params)
    assert first.status == CheckStatus.SUCCESS and first.message.startswith("1 match")
    assert first.state["offset"] == log.stat().st_size
    with log.open("a") as f:
        f.write("ERROR two\nERROR three\nERROR four-without-newline")
    second = run("log_grep", params, state=first.state)
    # Two new complete lines: 3 matches in the window > threshold 2. The half-written line waits.
    assert second.status == CheckStatus.FAILURE and second.message.startswith("3 match")
    with log.open("a") as f:
        f.write("\n")
    third = run("log_grep", params, state=second.state)
    assert third.message.startswith("4 match")
    # Ten minutes later, the window has slid past every match.
    aged = {**third.state, "hits": [[at - 601, n] for at, n in third.state["hits"]]}
    quiet = run("log_grep", params, state=aged)
    assert quiet.status == CheckStatus.SUCCESS and quiet.message.startswith("0 match")


def test_log_grep_starts_at_the_end_and_follows_rotation(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("ERROR old\n" * 5)
    params = {"path": str(log), "pattern": "ERROR", "threshold": 0}
    first = run("log_grep", params)
    assert first.status == CheckStatus.SUCCESS  # history before the first scan is not counted
    log.write_text("ERROR new\n")  # truncated and rewritten: a rotation
    second = run("log_grep", params, state=first.state)
    assert second.status == CheckStatus.FAILURE and second.message.startswith("1 match")


def test_log_grep_on_a_pipe_is_an_error_at_once(tmp_path):
    import os

    fifo = tmp_path / "app.pipe"
    os.mkfifo(fifo)
    outcomes = []
    # Opening a pipe blocks until a writer comes: the check runs in a thread of its own so that,
    # if it opened the pipe, the test can still end (by writing to it) and fail.
    thread = threading.Thread(target=lambda: outcomes.append(
        run("log_grep", {"path": str(fifo), "pattern": "x", "stream": True})), daemon=True)
    thread.start()
    thread.join(30)
    if thread.is_alive():
        with open(fifo, "w"):  # releases the blocked open()
            pass
        pytest.fail("the check blocked on open()")
    [outcome] = outcomes
    assert outcome.status == CheckStatus.ERROR and "not a regular file" in outcome.message


def test_log_grep_missing_file_is_an_error(tmp_path):
    outcome = run("log_grep", {"path": str(tmp_path / "nope.log"), "pattern": "x"})
    assert outcome.status == CheckStatus.ERROR


ROTATION_PARAMS = {"pattern": "ERROR", "threshold": 100, "window_s": 600, "start": "beginning"}


def append(path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


@pytest.mark.parametrize("stream", [False, True])
def test_log_grep_counts_every_match_across_a_rename_rotation(tmp_path, stream):
    log = tmp_path / "app.log"
    params = {**ROTATION_PARAMS, "path": str(log), "stream": stream}
    log.write_text("ERROR 1 read before the rotation\n")
    first = run("log_grep", params)
    assert first.message.startswith("1 match")
    # Written to the old file after our last read, then rotated away (the last line unfinished:
    # nothing more will come to that file, so it counts as it is).
    append(log, "ERROR 2 after our read\nINFO quiet\nERROR 3 last line, no newline")
    log.rename(tmp_path / "app.log.1")
    log.write_text("ERROR 4 in the new file\n")
    (tmp_path / "app.log.2").write_text("ERROR an older rotation, read long ago\n")
    second = run("log_grep", params, state=first.state)
    assert second.message.startswith("4 match"), second.message
    assert "missed" not in second.message
    assert second.state["inode"] == log.stat().st_ino and second.state["offset"] == log.stat().st_size
    append(log, "ERROR 5\n")
    third = run("log_grep", params, state=second.state)
    assert third.message.startswith("5 match") and "missed" not in third.message


@pytest.mark.parametrize("stream", [False, True])
def test_log_grep_counts_every_match_across_copytruncate(tmp_path, stream):
    log = tmp_path / "app.log"
    params = {**ROTATION_PARAMS, "path": str(log), "stream": stream}
    log.write_text("2025-01-01T10:00:00 ERROR 1 read before the rotation\n")
    first = run("log_grep", params)
    assert first.message.startswith("1 match")
    append(log, "2025-01-01T10:00:01 ERROR 2 after our read\n2025-01-01T10:00:02 INFO quiet\n")
    # An unrelated sibling of the same size does not pass for the copy: its head differs.
    (tmp_path / "app.log.2").write_bytes(b"x" * log.stat().st_size)
    shutil.copyfile(log, tmp_path / "app.log.1")
    with log.open("r+") as f:
        f.truncate(0)
    append(log, "2025-01-01T10:00:03 ERROR 3 after the truncation\n")
    second = run("log_grep", params, state=first.state)
    assert second.message.startswith("3 match"), second.message
    assert "missed" not in second.message

    # Truncated again, and written past the old offset before the next run: same inode, a larger
    # file, but another head.
    shutil.copyfile(log, tmp_path / "app.log.1")
    append(tmp_path / "app.log.1", "2025-01-01T10:00:04 ERROR 4 copied with the rest\n")
    with log.open("r+") as f:
        f.truncate(0)
    append(log, "2025-01-01T10:00:05 ERROR 5 after the second truncation, and a long line to pass "
                "the old offset " + "." * 200 + "\n")
    third = run("log_grep", params, state=second.state)
    assert third.message.startswith("5 match"), third.message


@pytest.mark.parametrize("stream", [False, True])
def test_log_grep_says_lines_may_be_missed_when_the_rotated_file_is_gone(tmp_path, stream):
    log = tmp_path / "app.log"
    params = {**ROTATION_PARAMS, "path": str(log), "stream": stream}
    log.write_text("ERROR 1\n")
    first = run("log_grep", params)
    append(log, "ERROR 2 after our read\n")
    log.rename(tmp_path / "app.log.1")
    (tmp_path / "app.log.1").unlink()  # compressed or deleted before the check ran
    log.write_text("ERROR 3 in the new file\n")
    second = run("log_grep", params, state=first.state)
    if stream:
        # The stream still had the old file open: nothing is lost.
        assert second.message.startswith("3 match") and "missed" not in second.message
    else:
        assert second.message.startswith("2 match")
        assert "may have been missed" in second.message


def test_log_grep_says_lines_may_be_missed_when_a_truncated_log_has_no_copy(tmp_path):
    log = tmp_path / "app.log"
    params = {**ROTATION_PARAMS, "path": str(log)}
    log.write_text("ERROR 1\nERROR 2\n")
    first = run("log_grep", params)
    log.write_text("ERROR 3\n")
    second = run("log_grep", params, state=first.state)
    assert second.message.startswith("3 match") and "may have been missed" in second.message


# Resource ---------------------------------------------------------------------------------------

JSON_BODY = {"status": "green", "version": "1.4.2",
             "nodes": [{"name": "a", "up": True}, {"name": "b", "up": True}],
             "tags": ["eu", "prod"], "queue_depth": 3, "owner": ""}


@pytest.mark.parametrize(("assertion", "ok"), [
    ({"path": "$.status", "operator": "Equals", "value": "green"}, True),
    ({"path": "$.status", "operator": "Equals", "value": "red"}, False),
    ({"path": "$.version", "operator": "NotEmpty"}, True),
    ({"path": "$.owner", "operator": "NotEmpty"}, False),
    ({"path": "$.missing", "operator": "NotEmpty"}, False),
    ({"path": "$.version", "operator": "RegexMatch", "value": r"^1\.\d+\.\d+$"}, True),
    ({"path": "$.status", "operator": "RegexMatch", "value": "^red"}, False),
    ({"path": "$.tags", "operator": "ListContains", "value": "prod"}, True),
    ({"path": "$.nodes[*].name", "operator": "ListContains", "value": "c"}, False),
    ({"path": "$.queue_depth", "operator": "GreaterThan", "value": 2}, True),
    ({"path": "$.queue_depth", "operator": "LessThan", "value": 3}, False),
    ({"path": "$.nodes[?(@.up == true)].name", "operator": "ListContains", "value": "b"}, True),
])
def test_resource_json_endpoint_operators(assertion, ok):
    with http_server(json_body=JSON_BODY) as (_, url):
        outcome = run("resource", {"url": f"{url}/json", "assertions": [assertion]})
    assert outcome.status == (CheckStatus.SUCCESS if ok else CheckStatus.FAILURE), outcome.message


@pytest.mark.django_db
def test_resource_django_model_query():
    from tests.factories.health import HealthSpecFactory, check_doc

    HealthSpecFactory(name="alpha", checks=[check_doc("db"), check_doc("cache", "redis")])
    HealthSpecFactory(name="beta", enabled=False)
    params = {"model": "health.HealthCheck", "filter": {"spec__enabled": True}, "fields": ["name", "type"],
              "assertions": [{"path": "$.count", "operator": "Equals", "value": 2},
                             {"path": "$.items[*].type", "operator": "ListContains", "value": "redis"}]}
    assert run("resource", params).status == CheckStatus.SUCCESS
    params["assertions"] = [{"path": "$.count", "operator": "GreaterThan", "value": 5}]
    failed = run("resource", params)
    assert failed.status == CheckStatus.FAILURE and "2 is not > 5" in failed.message


# Platform ---------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_database_check():
    assert run("database", {}).status == CheckStatus.SUCCESS


@pytest.mark.django_db
def test_database_and_model_queries_are_cancelled_by_the_server_at_the_timeout():
    from django.db import OperationalError, connection

    from apps.health.checks.platform import bounded_queries

    # Cancelled by the server: without the bound, the query would simply finish.
    with (pytest.raises(OperationalError, match="statement timeout"), bounded_queries("default", 0.2),
          connection.cursor() as cursor):
        cursor.execute("SELECT pg_sleep(3)")


def test_redis_check_against_the_real_redis_and_a_closed_port():
    assert run("redis", {}).status == CheckStatus.SUCCESS
    with http_server() as (server, _):
        port = server.server_address[1]
    down = run("redis", {"url": f"redis://127.0.0.1:{port}/0"}, timeout=0.5)
    assert down.status == CheckStatus.FAILURE and "unreachable" in down.message
