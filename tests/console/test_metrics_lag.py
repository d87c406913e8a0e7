"""/metrics adds the consumer lag of the process's groups when the state can report it."""

from __future__ import annotations

from prevent.web import lag as kafkalag

from .conftest import Console


def test_lag_renders_as_a_prometheus_gauge() -> None:
    text = kafkalag.prometheus({("prevent-rules", "prevent.incidents.v1", 2): 5})
    assert "# TYPE prevent_consumer_lag gauge" in text
    # prometheus_client writes labels sorted by name and values as floats
    assert ('prevent_consumer_lag{group="prevent-rules",partition="2",topic="prevent.incidents.v1"} 5.0\n'
            in text)


async def test_an_unreachable_broker_yields_no_samples_not_an_error() -> None:
    text = await kafkalag.lag_metrics("127.0.0.1:9", lambda: ["prevent-rules"], timeout_s=0.5)()
    assert text.endswith("# TYPE prevent_consumer_lag gauge\n")


async def test_metrics_include_the_lag(console: Console) -> None:
    async def lag() -> str:
        return kafkalag.prometheus({("g", "t", 0): 3})

    console.app.state.console.lag = lag
    async with console.client() as client:
        text = (await client.get("/metrics")).text
    assert 'prevent_consumer_lag{group="g",partition="0",topic="t"} 3.0\n' in text
