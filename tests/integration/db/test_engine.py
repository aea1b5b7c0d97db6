"""The engine factory against the real PostgreSQL: libpq ``options`` of the URL survive the
``connect_args`` a worker adds (its statement timeout), so a URL can choose a schema."""

from __future__ import annotations

from sqlalchemy import text

from killkrill.db.engine import create_engine


def test_url_options_and_connect_args_options_both_apply(postgres_url: str) -> None:
    engine = create_engine(postgres_url, connect_args={"options": "-c statement_timeout=4321"})
    try:
        with engine.connect() as conn:
            search_path = conn.execute(text("SHOW search_path")).scalar_one()
            timeout = conn.execute(text("SHOW statement_timeout")).scalar_one()
    finally:
        engine.dispose()
    assert search_path.startswith("kk_test_"), search_path  # from the URL (this run's schema)
    assert timeout == "4321ms"  # from connect_args
