"""Concurrent callers of one key share one load, and a caller that goes away does not stop it for the others."""

from __future__ import annotations

import asyncio

from fastpath.single_flight import SingleFlight


def test_concurrent_callers_of_one_key_share_one_load_and_a_later_caller_loads_again() -> None:
    loads: list[str] = []

    async def load(key: str) -> str:
        loads.append(key)
        await asyncio.sleep(0.01)
        return key.upper()

    async def main() -> tuple[list[str], str]:
        flight: SingleFlight[str, str] = SingleFlight()
        together = await asyncio.gather(*(flight.run(key, lambda key=key: load(key)) for key in "aaab"))
        later = await flight.run("a", lambda: load("a"))
        return list(together), later

    together, later = asyncio.run(main())

    assert together == ["A", "A", "A", "B"]
    assert later == "A"
    assert loads == ["a", "b", "a"]


def test_a_caller_that_goes_away_leaves_the_load_to_the_others() -> None:
    async def main() -> str:
        flight: SingleFlight[str, str] = SingleFlight()
        release = asyncio.Event()

        async def load() -> str:
            await release.wait()
            return "loaded"

        first = asyncio.ensure_future(flight.run("k", load))
        second = asyncio.ensure_future(flight.run("k", load))
        await asyncio.sleep(0)
        first.cancel()
        release.set()
        return await second

    assert asyncio.run(main()) == "loaded"


def test_a_failed_load_fails_every_caller_that_shared_it() -> None:
    async def main() -> list[BaseException | str]:
        flight: SingleFlight[str, str] = SingleFlight()

        async def load() -> str:
            await asyncio.sleep(0)
            raise LookupError("no such thing")

        return await asyncio.gather(*(flight.run("k", load) for _ in range(3)), return_exceptions=True)

    outcomes = asyncio.run(main())

    assert [type(outcome) for outcome in outcomes] == [LookupError] * 3
