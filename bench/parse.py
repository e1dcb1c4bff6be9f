"""How long parsing one command takes at the edge (bytes + AMQP properties -> typed command).

    .venv/bin/python -m bench.parse [--iterations N]

Prints the median and percentiles per command type over N parses, after a warm-up.
"""

import argparse
import json
import statistics
import time

from messages.amqp import AmqpProperties
from messages.commands import COMMAND_MODELS
from messages.examples import command_example
from messages.parsing import parse_command
from messages.settings import ContractSettings


def measure(body: bytes, properties: AmqpProperties, iterations: int) -> list[float]:
    """Seconds per parse, one sample per call."""
    settings = ContractSettings()
    for _ in range(min(200, iterations)):
        parse_command(body, properties, settings)
    samples = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        start = clock()
        parse_command(body, properties, settings)
        samples.append((clock() - start) / 1e9)
    return samples


def main() -> None:
    """Measure every command type and print a table in microseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=5000)
    iterations = parser.parse_args().iterations
    print(f"parse_command, {iterations} parses per type, microseconds")
    print(f"{'type':<32} {'bytes':>6} {'p50':>8} {'p95':>8} {'p99':>8}")
    for command_type in COMMAND_MODELS:
        document = command_example(command_type)
        body = json.dumps(document).encode()
        properties = AmqpProperties(message_id=document["id"])
        samples = sorted(measure(body, properties, iterations))
        p50 = statistics.median(samples) * 1e6
        p95 = samples[int(len(samples) * 0.95)] * 1e6
        p99 = samples[int(len(samples) * 0.99)] * 1e6
        print(f"{command_type:<32} {len(body):>6} {p50:>8.1f} {p95:>8.1f} {p99:>8.1f}")


if __name__ == "__main__":
    main()
