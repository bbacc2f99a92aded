"""Protocol semantics: auth, errors, selectors, pagination, sorting, rate limits, headers."""

from __future__ import annotations

import time
import uuid

import pytest
from conftest import EmulatorFactory, OpenAPIChecker, Raw

from scherbelberg_dask.emulator import Emulator
from scherbelberg_dask.emulator.api.context import ResponseRecord


def _keys(raw: Raw, count: int) -> None:
    for i in range(count):
        answer = raw("POST", "/placement_groups", json={"name": f"g{i:02d}", "type": "spread"})
        assert answer.status_code == 201


def test_auth(emulator: Emulator) -> None:
    anonymous = Raw(emulator)
    answer = anonymous("GET", "/servers")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"
    assert Raw(emulator, "x" * 64)("GET", "/servers").status_code == 401
    readonly = Raw(emulator, emulator.readonly_token)
    assert readonly("GET", "/servers").status_code == 200
    denied = readonly("POST", "/ssh_keys", json={"name": "k", "public_key": "x"})
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == "token_readonly"
    assert anonymous("GET", "/_emulator/state").status_code == 401
    assert len(emulator.token) == 64 and emulator.token.isalnum()


def test_error_envelope(raw: Raw) -> None:
    for method, path, status, code in [
        ("GET", "/no_such_thing", 404, "not_found"),
        ("GET", "/servers/123456", 404, "not_found"),
        ("GET", "/servers/abc", 404, "not_found"),
        ("PATCH", "/servers", 405, "method_not_allowed"),
    ]:
        answer = raw(method, path)
        assert answer.status_code == status, path
        assert answer.headers["Content-Type"].startswith("application/json")
        assert answer.json()["error"]["code"] == code
        assert set(answer.json()["error"]) == {"code", "message", "details"}
    answer = raw(
        "POST", "/ssh_keys", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "json_error"


def test_every_answer_has_headers(raw: Raw) -> None:
    for answer in (raw("GET", "/servers"), raw("GET", "/servers/1"), raw("GET", "/actions")):
        uuid.UUID(answer.headers["X-Correlation-Id"])
        limit = int(answer.headers["RateLimit-Limit"])
        remaining = int(answer.headers["RateLimit-Remaining"])
        reset = int(answer.headers["RateLimit-Reset"])
        assert limit == 3600 and 0 <= remaining < limit
        assert time.time() - 5 <= reset <= time.time() + (limit - remaining) + 5


def test_rate_limit(emulator_factory: EmulatorFactory) -> None:
    emulator = emulator_factory(rate_limit=3600, rate_limit_capacity=5)
    raw = Raw(emulator, emulator.token)
    answers = [raw("GET", "/locations") for _ in range(10)]
    statuses = [a.status_code for a in answers]
    assert statuses[:4] == [200] * 4
    assert 429 in statuses
    limited = next(a for a in answers if a.status_code == 429)
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert int(limited.headers["RateLimit-Reset"]) >= int(time.time())
    # Unauthenticated requests count too.
    assert Raw(emulator)("GET", "/locations").status_code == 429
    emulator.reset_counters()
    assert raw("GET", "/locations").status_code == 200


def test_label_selectors(raw: Raw) -> None:
    groups = {
        "a": {"env": "prod", "tier": "web"},
        "b": {"env": "prod", "tier": "db"},
        "c": {"env": "dev"},
        "d": {},
    }
    for name, labels in groups.items():
        answer = raw(
            "POST", "/placement_groups", json={"name": name, "type": "spread", "labels": labels}
        )
        assert answer.status_code == 201

    def select(selector: str) -> set[str]:
        answer = raw("GET", "/placement_groups", params={"label_selector": selector})
        assert answer.status_code == 200, (selector, answer.text)
        return {g["name"] for g in answer.json()["placement_groups"]}

    assert select("env=prod") == {"a", "b"}
    assert select("env==prod") == {"a", "b"}
    assert select("env!=prod") == {"c", "d"}
    assert select("tier") == {"a", "b"}
    assert select("!tier") == {"c", "d"}
    assert select("env in (dev, prod),tier notin (db)") == {"a", "c"}
    assert select("env=prod,tier!=db") == {"a"}
    assert select("env = prod , tier") == {"a", "b"}
    for bad in ("env=(", "=x", "env in prod", "a b", "env=prod,,", "bad key!=x", "!"):
        answer = raw("GET", "/placement_groups", params={"label_selector": bad})
        assert answer.status_code == 422, bad
        assert answer.json()["error"]["details"]["fields"][0]["name"] == "label_selector"


def test_pagination(raw: Raw) -> None:
    _keys(raw, 7)
    first = raw("GET", "/placement_groups", params={"per_page": 3}).json()
    assert first["meta"]["pagination"] == {
        "page": 1,
        "per_page": 3,
        "previous_page": None,
        "next_page": 2,
        "last_page": 3,
        "total_entries": 7,
    }
    last = raw("GET", "/placement_groups", params={"per_page": 3, "page": 3}).json()
    assert len(last["placement_groups"]) == 1
    assert last["meta"]["pagination"]["next_page"] is None
    assert last["meta"]["pagination"]["previous_page"] == 2
    beyond = raw("GET", "/placement_groups", params={"per_page": 3, "page": 9}).json()
    assert beyond["placement_groups"] == []
    default = raw("GET", "/placement_groups").json()["meta"]["pagination"]
    assert default["per_page"] == 25 and default["last_page"] == 1
    clamped = raw("GET", "/placement_groups", params={"per_page": 500}).json()
    assert clamped["meta"]["pagination"]["per_page"] == 50
    for bad in ({"page": 0}, {"per_page": 0}, {"page": "x"}):
        assert raw("GET", "/placement_groups", params=bad).status_code == 422


def test_sorting(raw: Raw) -> None:
    for name, label in (("b", "1"), ("a", "2"), ("c", "1")):
        raw(
            "POST",
            "/placement_groups",
            json={"name": name, "type": "spread", "labels": {"k": label}},
        )

    def names(*sort: str) -> list[str]:
        answer = raw("GET", "/placement_groups", params=[("sort", s) for s in sort])
        assert answer.status_code == 200
        return [g["name"] for g in answer.json()["placement_groups"]]

    assert names() == ["b", "a", "c"]
    assert names("name") == ["a", "b", "c"]
    assert names("name:desc") == ["c", "b", "a"]
    assert names("id:desc") == ["c", "a", "b"]
    assert names("created:asc", "name:desc") == ["c", "b", "a"]
    for bad in ("color", "name:sideways"):
        assert raw("GET", "/placement_groups", params={"sort": bad}).status_code == 422


def test_counters_and_introspection(emulator: Emulator, raw: Raw) -> None:
    emulator.reset_counters()
    raw("GET", "/servers")
    raw("GET", "/servers/7")
    raw("GET", "/servers/8")
    counters = emulator.counters()
    assert counters["by_route"]["GET /v1/servers"] == 1
    assert counters["by_route"]["GET /v1/servers/{id}"] == 2
    assert counters["by_status"] == {"200": 1, "404": 2}
    remote = raw("GET", "/_emulator/counters").json()
    assert remote["by_route"] == counters["by_route"]
    assert raw("POST", "/_emulator/counters/reset").json()["total"]["requests"] == 0

    created = raw(
        "POST", "/servers", json={"name": "s", "server_type": "cx23", "image": "debian-12"}
    )
    server_id = created.json()["server"]["id"]
    state = raw("GET", "/_emulator/state").json()
    assert [s["id"] for s in state["servers"]] == [server_id]
    assert state["actions"]["total"] >= 2
    assert [s["id"] for s in emulator.snapshot()["servers"]] == [server_id]

    faults = raw("PUT", "/_emulator/faults", json={"boot_failure_rate": 0.5, "seed": 3}).json()
    assert faults["boot_failure_rate"] == 0.5
    assert emulator.faults.boot_failure_rate == 0.5
    assert raw("GET", "/_emulator/faults").json()["seed"] == 3
    assert raw("PUT", "/_emulator/faults", json={"bogus": 1}).status_code == 422
    assert raw("PUT", "/_emulator/faults", json={"api_error_rate": 2}).status_code == 422
    assert (
        raw("POST", f"/_emulator/servers/{server_id}/refuse_ssh", json={"seconds": 1}).status_code
        == 202
    )
    assert (
        raw("POST", f"/_emulator/servers/{server_id}/crash", json={"after": 0}).status_code == 202
    )
    assert raw("POST", "/_emulator/servers/999/crash", json={}).status_code == 404


def test_checker_detects_violations(openapi: OpenAPIChecker) -> None:
    good = ResponseRecord(
        "GET",
        "/v1/locations/1",
        "/v1/locations/{id}",
        404,
        "application/json",
        b'{"error": {"code": "not_found", "message": "m", "details": null}}',
    )
    assert openapi.problems(good) == []
    bad_body = ResponseRecord(
        "GET",
        "/v1/ssh_keys/1",
        "/v1/ssh_keys/{id}",
        200,
        "application/json",
        b'{"ssh_key": {"id": "one"}}',
    )
    assert openapi.problems(bad_body)
    not_json = ResponseRecord("GET", "/v1/servers", "/v1/servers", 500, "text/plain", b"oops")
    assert openapi.problems(not_json)
    undocumented = ResponseRecord(
        "GET", "/v1/servers", "/v1/servers", 201, "application/json", b"{}"
    )
    assert openapi.problems(undocumented)


@pytest.mark.parametrize("path", ["/volumes", "/floating_ips", "/primary_ips", "/load_balancers"])
def test_unmodelled_collections_are_empty(raw: Raw, path: str) -> None:
    answer = raw("GET", path)
    assert answer.status_code == 200
    assert answer.json()[path.strip("/")] == []
