"""The index template body (pure)."""

from __future__ import annotations

from killkrill.workers.logs.template import template_body, template_name, template_priority


def test_template_maps_the_core_fields() -> None:
    body = template_body("logs")
    assert body["index_patterns"] == ["logs-*"]
    assert "data_stream" not in body
    props = body["template"]["mappings"]["properties"]
    assert props["@timestamp"]["type"] == "date"
    assert props["processed_at"]["type"] == "date"
    assert {props[f]["type"] for f in ("service", "level", "environment", "version")} == {"keyword"}
    assert props["message"]["type"] == "text"
    assert "number_of_replicas" not in body["template"]["settings"]["index"]
    assert (
        template_body("logs", number_of_replicas=0)["template"]["settings"]["index"][
            "number_of_replicas"
        ]
        == 0
    )


def test_more_specific_prefixes_win_and_beat_the_stack_logs_template() -> None:
    assert template_priority("logs-test") > template_priority("logs") > 100
    assert template_name("logs-test") == "killkrill-logs-test"
