"""The database has one owner by construction: other threads are refused, an await inside a
transaction is caught, a nested transaction is a savepoint."""
import asyncio
import threading

import pytest

from gateway.db import Database, TransactionOverlap, WrongThread


def test_a_call_from_another_thread_is_refused_not_raced(tmp_path):
    db = Database(str(tmp_path / "d.db"))
    errors = []

    def worker():
        for call in (lambda: db.one("SELECT 1"), lambda: db.run("INSERT INTO counters VALUES ('x', 1)"),
                     lambda: db.tx().__enter__()):
            try:
                call()
            except WrongThread as exc:
                errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert len(errors) == 3
    assert db.one("SELECT COUNT(*) FROM counters")[0] == 0  # nothing written from there
    db.close()


def test_an_await_inside_a_transaction_cannot_let_another_task_join_it(tmp_path):
    db = Database(str(tmp_path / "d.db"))

    async def holder(opened):
        with db.tx():
            db.run("INSERT INTO counters VALUES ('a', 1)")
            opened.set()
            await asyncio.sleep(0.05)  # the mistake: an await inside tx()

    async def intruder(opened):
        await opened.wait()
        with pytest.raises(TransactionOverlap):
            db.run("INSERT INTO counters VALUES ('b', 1)")
        with pytest.raises(TransactionOverlap):
            with db.tx():
                pass

    async def main():
        opened = asyncio.Event()
        await asyncio.gather(holder(opened), intruder(opened))

    asyncio.run(main())
    assert [r[0] for r in db.all("SELECT name FROM counters")] == ["a"]
    db.close()


def test_a_nested_transaction_that_fails_rolls_back_only_itself(tmp_path):
    db = Database(str(tmp_path / "d.db"))
    with db.tx():
        db.run("INSERT INTO counters VALUES ('kept', 1)")
        with pytest.raises(ValueError):
            with db.tx():
                db.run("INSERT INTO counters VALUES ('dropped', 1)")
                raise ValueError("one bad message")
        db.run("INSERT INTO counters VALUES ('after', 1)")
    assert sorted(r[0] for r in db.all("SELECT name FROM counters")) == ["after", "kept"]
    with pytest.raises(RuntimeError):
        with db.tx():
            db.run("INSERT INTO counters VALUES ('outer', 1)")
            raise RuntimeError
    assert db.one("SELECT 1 FROM counters WHERE name = 'outer'") is None
    db.close()


def test_every_api_route_runs_on_the_loop():
    """A plain `def` route would run in FastAPI's thread pool, where the database refuses it."""
    import inspect

    from fastapi.routing import APIRoute

    from gateway.api import create_app
    from gateway.config import GatewayConfig

    class Stub:  # building the routes reads the config (the site's time zone), never a service
        users = None
        cfg = GatewayConfig({})

    app = create_app(Stub())
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert len(routes) > 20
    def calls(dependant):
        for dep in dependant.dependencies:
            if dep.call is not None:
                yield dep.call
            yield from calls(dep)

    checked = 0
    for route in routes:
        assert inspect.iscoroutinefunction(route.endpoint), route.path
        for call in calls(route.dependant):
            assert inspect.iscoroutinefunction(call), (route.path, call)
            checked += 1
    assert checked > 20  # login and role checks were walked
