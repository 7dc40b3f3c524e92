"""Classification throughput: `python benchmarks/bench_classify.py [--count N]` from the repo root.

Times `classify_status_message` (what detection calls for every failed cluster operation) on the
corpus in tests/data/error_corpus.json:

- short free text: the corpus texts under 300 characters (a string that is not JSON);
- nested statusMessage: the Activity Log statusMessage strings (JSON with the cause in
  error.details, often JSON again inside a message);
- not_sp message: the corpus texts whose answer is not_sp (every rule is considered);
- the whole corpus repeated, `--count` classifications in all.

Each workload runs in three rounds and reports the best round: the machine is shared, and the
best round is the one least disturbed by other work. An empty-loop figure is printed so that
results from different machines can be compared.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from remediation.decide.classify import classify_status_message  # noqa: E402 (needs the path above)

CORPUS = json.loads((ROOT / "tests" / "data" / "error_corpus.json").read_text("utf-8"))
ROUNDS = 3


def corpus_inputs() -> list[tuple[str, str, str]]:
    """(label, statusMessage-or-text, expected kind) for every corpus entry that has error text."""
    inputs = []
    for case in CORPUS:
        if "text" in case:
            inputs.append(("text", case["text"], case["expected_kind"]))
        elif "statusMessage" in case:
            inputs.append(("statusMessage", case["statusMessage"], case["expected_kind"]))
        elif status_message := case["entry"].get("properties", {}).get("statusMessage"):
            inputs.append(("statusMessage", status_message, case["expected_kind"]))
    return inputs


def best_rate(messages: list[str], count: int) -> tuple[float, float]:
    """(messages per second, microseconds per message) of the best of ROUNDS rounds of ``count`` each."""
    batch = (messages * (count // len(messages) + 1))[:count]
    classify: Callable[[str], object] = classify_status_message
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for message in batch:
            classify(message)
        best = min(best, time.perf_counter() - started)
    return count / best, best / count * 1e6


def empty_loop_ns(count: int = 1_000_000) -> float:
    started = time.perf_counter()
    for _ in range(count):
        pass
    return (time.perf_counter() - started) / count * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000, help="classifications of the whole corpus (200,000)")
    args = parser.parse_args()

    inputs = corpus_inputs()
    wrong = [message[:60] for _, message, kind in inputs if classify_status_message(message).kind != kind]
    if wrong:  # timing a broken classifier would mean nothing
        sys.exit(f"the classifier disagrees with the corpus on {len(wrong)} input(s), e.g. {wrong[0]!r}")

    workloads = {
        "short free text": [message for label, message, _ in inputs if label == "text" and len(message) < 300],
        "nested statusMessage": [message for label, message, _ in inputs if label == "statusMessage"],
        "not_sp message": [message for label, message, kind in inputs if label == "text" and kind == "not_sp"],
    }
    per_round = max(1, args.count // 4)
    print(f"classification throughput, {platform.python_implementation()} {platform.python_version()}, "
          f"empty loop {empty_loop_ns():.0f} ns/iteration; best of {ROUNDS} rounds")
    rotating = sum(1 for _, _, kind in inputs if kind in ("invalid_secret", "expired_secret"))
    print(f"classify: agrees with the corpus on {len(inputs)}/{len(inputs)} inputs ({rotating} rotate, "
          f"{len(inputs) - rotating} must not)")
    for name, messages in workloads.items():
        rate, micros = best_rate(messages, per_round)
        average = sum(map(len, messages)) / len(messages)
        print(f"classify: {rate:>9,.0f} msgs/s ({micros:5.1f} µs/msg) {name} "
              f"({len(messages)} distinct, {average:,.0f} chars on average, {per_round:,} per round)")
    everything = [message for _, message, _ in inputs]
    started = time.perf_counter()
    for message in (everything * (args.count // len(everything) + 1))[:args.count]:
        classify_status_message(message)
    elapsed = time.perf_counter() - started
    print(f"classify: {args.count / elapsed:>9,.0f} msgs/s ({elapsed / args.count * 1e6:5.1f} µs/msg) whole corpus "
          f"repeated ({len(everything)} distinct, {args.count:,} classifications, one pass)")
    for name, hostile in hostile_inputs().items():
        started = time.perf_counter()
        classify_status_message(hostile)
        print(f"classify: {(time.perf_counter() - started) * 1000:9.1f} ms for one hostile input: {name} "
              f"({len(hostile):,} chars)")


def hostile_inputs() -> dict[str, str]:
    """Inputs built to make the context checks expensive (tests/test_classify.py checks their verdicts)."""
    many_scopes = json.dumps({"error": {"code": "X", "details": [{"message": "expired client secret"}] * 20_000}})
    # Entra ID verdicts outside any AKS service-principal error: every one asks for its error chain.
    quoted_verdicts = json.dumps({"error": {"code": "X", "details": [
        {"message": "AADSTS7000215: Invalid client secret provided."}] * 20_000}})
    return {"20,000 sibling error scopes": many_scopes,
            "2,000 nested response bodies": "Response body: " * 2_000
                                            + "adal: Refresh request failed. Status Code = '401'. " * 2_000,
            "20,000 quoted Entra ID verdicts": quoted_verdicts}


if __name__ == "__main__":
    main()
