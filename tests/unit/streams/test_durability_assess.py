"""Which Redis settings stop a start and which only warn: :func:`assess`, in a table."""

from __future__ import annotations

import pytest

from killkrill.streams.durability import RedisDurability, assess


def _facts(**kw: object) -> RedisDurability:
    base: dict[str, object] = {
        "version": (7, 0, 15),
        "maxmemory_policy": "noeviction",
        "appendonly": True,
        "appendfsync": "everysec",
    }
    return RedisDurability(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("facts", "strict", "fsync", "errors", "warnings"),
    [
        (_facts(), True, False, [], []),
        (_facts(maxmemory_policy="allkeys-lru"), True, False, ["maxmemory-policy"], []),
        (_facts(maxmemory_policy="volatile-ttl"), False, False, [], ["maxmemory-policy"]),
        (_facts(appendonly=False), True, False, [], ["appendonly no"]),
        (_facts(appendfsync="no"), True, False, [], ["appendfsync is `no`"]),
        (_facts(maxmemory_policy=None, appendonly=None, config_refused="ERR unknown command"),
         True, False, ["refused CONFIG GET"], []),
        (_facts(maxmemory_policy=None, appendonly=None, config_refused="NOPERM"),
         False, False, [], ["refused CONFIG GET"]),
        (_facts(), True, True, ["needs Redis >= 7.2"], []),
        (_facts(version=(7, 2, 4)), True, True, [], []),
        (_facts(version=(7, 2, 4), appendonly=False), False, True, ["needs the AOF on"],
         ["appendonly no"]),
        (_facts(version=None), True, True, ["this Redis is unknown"], []),
    ],
)  # fmt: skip
def test_assess_table(facts, strict, fsync, errors, warnings):
    got_errors, got_warnings = assess(facts, strict=strict, fsync=fsync)
    assert len(got_errors) == len(errors), got_errors
    assert len(got_warnings) == len(warnings), got_warnings
    for want, got in zip(errors + warnings, got_errors + got_warnings, strict=True):
        assert want in got
