"""The parts of a release that need no server: rules, routing and switches, request ids of a
shadow batch in the predictions log, the candidate client, refusals."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlnb.bento.release import schema_differences
from mlnb.monitoring.records import Answered, PredictionRecords
from mlnb.serving import release_rules, release_state
from mlnb.serving.http import batch_ids
from mlnb.serving.release import Connections, _key_value


def test_rules_parse_and_decide() -> None:
    rules = release_rules.parse_rules("agreement>=0.98, p99<=1.2x")
    assert [str(r) for r in rules] == ["agreement>=0.98", "p99<=1.2x"]
    primary = {"p99": 10.0}
    held = release_rules.all_hold(rules, {"agreement": 0.99, "p99": 11.0}, primary)
    assert held.decided and held.holds and "candidate p99 11, primary 10" in held.why
    failed = release_rules.all_hold(rules, {"agreement": 0.99, "p99": 13.0}, primary)
    assert failed.decided and not failed.holds and "p99<=1.2x does not hold" in failed.why
    unknown = release_rules.all_hold(rules, {"agreement": None, "p99": 11.0}, primary)
    assert not unknown.decided
    back = release_rules.any_holds(
        release_rules.parse_rules("error_rate>0.05"), {"error_rate": 0.1}, {}
    )
    assert back.holds


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("agreement=0.98", "is not a rule"),
        ("latency<=2", "'latency' is not a figure"),
        ("a" * 2000, "characters"),
    ],
)
def test_a_bad_rule_is_refused_naming_it(text: str, named: str) -> None:
    with pytest.raises(release_rules.ReleaseRuleError, match=named):
        release_rules.parse_rules(text)


def _switch_many(folder: str, count: int) -> None:
    for _ in range(count):
        release_state.switch(Path(folder), "promote", by="test", why="race")


def test_switches_from_several_processes_are_all_recorded_in_order(tmp_path: Path) -> None:
    release_state.start_routing(tmp_path, None)
    workers = [
        multiprocessing.Process(target=_switch_many, args=(str(tmp_path), 10)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    switches = release_state.read_switches(tmp_path)
    assert [s["switch"] for s in switches] == list(range(1, 31))
    assert release_state.read_routing(tmp_path) == release_state.Routing(
        "candidate", None, 30, switches[-1]["time"]
    )


def test_a_rules_switch_yields_to_a_switch_made_meanwhile(tmp_path: Path) -> None:
    release_state.start_routing(tmp_path, 10.0)
    assert release_state.switch(tmp_path, "promote", by="someone")
    assert release_state.switch(tmp_path, "rollback", by="auto", expect=0) is None
    routing = release_state.read_routing(tmp_path)
    assert routing is not None and (routing.answering, routing.percent) == ("candidate", 100.0)
    release_state.switch(tmp_path, "rollback")
    routing = release_state.read_routing(tmp_path)
    assert routing is not None and (routing.answering, routing.percent) == ("primary", 0.0)


def test_a_damaged_routing_file_is_an_error_that_says_how_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / release_state.ROUTING_FILE).write_text('{"answering": "nobody"}')
    with pytest.raises(release_state.ReleaseStateError, match="mlnb release rollback"):
        release_state.read_routing(tmp_path)


@given(st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=8))
def test_rows_of_a_shadow_batch_are_logged_under_the_ids_they_came_with(sizes: list[int]) -> None:
    features = [{"name": "x", "dtype": "float64", "kind": "float"}]
    records = PredictionRecords(features, classification=False)
    records.start(7)
    ids = tuple((f"req-{i}", n) for i, n in enumerate(sizes))
    rows = sum(sizes)
    frame = pd.DataFrame({"x": np.arange(rows, dtype=float)})
    single = Answered(0.0, pd.DataFrame({"x": [1.0]}), [1.0], 1, "alone")
    batch = records.build([Answered(0.0, frame, list(range(rows)), rows, ids), single]).batch
    expected = [rid for rid, n in ids for _ in range(n)] + ["alone"]
    assert batch.column("request_id").to_pylist() == expected


def test_the_batch_header_parses_or_is_ignored() -> None:
    def scope(value: bytes) -> dict:
        return {"headers": [(b"x-mlnb-request-ids", value)]}

    assert batch_ids(scope(b"a*2,b-1*1")) == (("a", 2), ("b-1", 1))
    assert batch_ids(scope(b"a*2,b c*1")) is None
    assert batch_ids(scope(b"a*x")) is None
    assert batch_ids({"headers": []}) is None


def test_the_canary_key_is_read_from_object_or_list_rows() -> None:
    assert _key_value({"rows": [{"a": 1.5, "b": 2}]}, "a", 0) == "1.5"
    assert _key_value({"rows": [[3, 4]]}, "b", 1) == "4"
    assert _key_value({"rows": [{"b": 2}]}, "a", 0) is None
    assert _key_value({"rows": []}, "a", 0) is None


def test_requests_of_other_schemas_differ_field_by_field() -> None:
    def spec(fields: list[tuple[str, str]], task: str = "classification") -> dict:
        return {
            "task": task,
            "schema": {"fields": [{"name": n, "dtype": d, "kind": "float"} for n, d in fields]},
        }

    same = spec([("a", "float64"), ("b", "float64")])
    assert schema_differences(same, same) == []
    other = spec([("a", "int64"), ("c", "float64")], "regression")
    assert schema_differences(same, other) == [
        "'a': dtype float64 in the primary, int64 in the candidate",
        "'b': only the primary takes it",
        "'c': only the candidate takes it",
        "task: classification in the primary, regression in the candidate",
    ]


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        answer = json.dumps({"got": len(body), "id": self.headers.get("x-request-id")}).encode()
        self.send_response(200 if body != b"fail" else 503)
        self.send_header("content-length", str(len(answer)))
        self.send_header("server-timing", "mlnb;dur=1.5")
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        return None


def test_the_candidate_client_keeps_connections_and_passes_answers_on() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        connections = Connections(f"tcp://127.0.0.1:{server.server_address[1]}")

        async def many() -> list[tuple[int, bytes, dict[str, str]]]:
            calls = [
                connections.post("/predict", b"x" * n, [("x-request-id", f"r{n}")])
                for n in range(1, 41)
            ]
            return await asyncio.gather(*calls, connections.post("/predict", b"fail", []))

        answers = asyncio.run(many())
        for n, (status, body, headers) in enumerate(answers[:-1], start=1):
            assert status == 200 and json.loads(body) == {"got": n, "id": f"r{n}"}
            assert headers["server-timing"] == "mlnb;dur=1.5"
        assert answers[-1][0] == 503
        assert len(connections.idle) <= 32
    finally:
        server.shutdown()
        server.server_close()
