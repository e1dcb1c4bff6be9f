"""Publisher confirms: each publish told once what became of it, however the broker batches."""

from consumers.confirms import Confirms, Outcome, ReturnKey


def _outcomes() -> dict[str, Outcome]:
    return {}


def _publish(confirms: Confirms, outcomes: dict[str, Outcome], name: str, key: ReturnKey) -> int:
    def record(outcome: Outcome) -> None:
        assert name not in outcomes, f"{name} told twice"
        outcomes[name] = outcome

    return confirms.published(key, record)


def test_sequence_numbers_count_from_one_and_a_multiple_ack_confirms_the_prefix() -> None:
    confirms, outcomes = Confirms(), _outcomes()
    seqs = [_publish(confirms, outcomes, f"e{i}", ("x", "k", f"e{i}")) for i in range(4)]
    assert seqs == [1, 2, 3, 4]
    confirms.answered(3, multiple=True, acked=True)
    assert outcomes == {"e0": Outcome.CONFIRMED, "e1": Outcome.CONFIRMED, "e2": Outcome.CONFIRMED}
    assert len(confirms) == 1
    confirms.answered(4, multiple=False, acked=True)
    assert outcomes["e3"] is Outcome.CONFIRMED
    assert len(confirms) == 0


def test_a_nack_fails_only_what_it_names() -> None:
    confirms, outcomes = Confirms(), _outcomes()
    for name in ("a", "b", "c"):
        _publish(confirms, outcomes, name, ("x", "k", name))
    confirms.answered(2, multiple=False, acked=False)
    confirms.answered(3, multiple=True, acked=True)
    assert outcomes == {"a": Outcome.CONFIRMED, "b": Outcome.NACKED, "c": Outcome.CONFIRMED}


def test_a_returned_publish_is_unroutable_when_acked_and_others_are_not_mistaken() -> None:
    confirms, outcomes = Confirms(), _outcomes()
    _publish(confirms, outcomes, "routed", ("", "q.retry.1s", "m1"))
    _publish(confirms, outcomes, "missing", ("", "q.retry.5s", "m1"))
    _publish(confirms, outcomes, "same-key-later", ("", "q.retry.5s", "m1"))
    confirms.returned(("", "q.retry.5s", "m1"))
    confirms.answered(3, multiple=True, acked=True)
    assert outcomes == {
        "routed": Outcome.CONFIRMED,
        "missing": Outcome.UNROUTABLE,
        "same-key-later": Outcome.CONFIRMED,
    }


def test_a_returned_and_nacked_publish_is_nacked() -> None:
    confirms, outcomes = Confirms(), _outcomes()
    _publish(confirms, outcomes, "a", ("x", "k", None))
    confirms.returned(("x", "k", None))
    confirms.answered(1, multiple=False, acked=False)
    assert outcomes == {"a": Outcome.NACKED}


def test_a_lost_channel_tells_every_unanswered_publish_once() -> None:
    confirms, outcomes = Confirms(), _outcomes()
    for name in ("a", "b", "c"):
        _publish(confirms, outcomes, name, ("x", "k", name))
    confirms.answered(1, multiple=False, acked=True)
    confirms.lost()
    assert outcomes == {"a": Outcome.CONFIRMED, "b": Outcome.LOST, "c": Outcome.LOST}
    confirms.answered(3, multiple=True, acked=True)  # a stray answer after the loss: ignored
    confirms.lost()
    assert len(confirms) == 0


def test_an_answer_for_an_unknown_number_is_ignored() -> None:
    confirms, outcomes = Confirms(), _outcomes()
    _publish(confirms, outcomes, "a", ("x", "k", "a"))
    confirms.answered(9, multiple=False, acked=True)
    assert outcomes == {}
