"""Acknowledgements in as few frames as the broker allows, and never one the broker would refuse."""

from consumers.ackqueue import AckFrame, AckQueue, NackFrame, Settlement


def _received(*tags: int) -> AckQueue:
    queue = AckQueue()
    for tag in tags:
        queue.received(tag)
    return queue


def test_a_settled_prefix_goes_as_one_multiple_ack() -> None:
    queue = _received(1, 2, 3)
    for tag in (3, 1, 2):  # settled out of order, as workers finish
        assert queue.settle(tag, Settlement.ACK)
    assert queue.flush() == [AckFrame(3, multiple=True)]
    assert len(queue) == 0
    assert queue.flush() == []


def test_a_single_settled_delivery_is_acked_alone() -> None:
    queue = _received(1)
    queue.settle(1, Settlement.ACK)
    assert queue.flush() == [AckFrame(1, multiple=False)]


def test_acks_past_an_unsettled_delivery_go_alone_and_the_gap_stays_open() -> None:
    queue = _received(1, 2, 3, 4, 5)
    for tag in (1, 2, 4, 5):
        queue.settle(tag, Settlement.ACK)
    # 3 is still running: a multiple ack at 5 would acknowledge it too.
    assert queue.flush() == [
        AckFrame(2, multiple=True),
        AckFrame(4, multiple=False),
        AckFrame(5, multiple=False),
    ]
    assert queue.unsettled() == [3]
    queue.settle(3, Settlement.ACK)
    assert queue.flush() == [AckFrame(3, multiple=False)]


def test_nothing_settled_sends_nothing() -> None:
    queue = _received(1, 2)
    assert queue.flush() == []
    assert queue.unsettled() == [1, 2]


def test_a_nack_in_the_middle_goes_alone_first_and_the_multiple_ack_spans_it() -> None:
    queue = _received(1, 2, 3, 4)
    queue.settle(1, Settlement.ACK)
    queue.settle(2, Settlement.REJECT)
    queue.settle(3, Settlement.ACK)
    queue.settle(4, Settlement.REQUEUE)
    # The nacks leave the broker's unacknowledged set before the ack, so ack 3 multiple covers
    # only 1 and 3.
    assert queue.flush() == [
        NackFrame(2, requeue=False),
        NackFrame(4, requeue=True),
        AckFrame(3, multiple=True),
    ]
    assert len(queue) == 0


def test_a_nack_past_an_unsettled_delivery_is_sent_at_once() -> None:
    queue = _received(1, 2)
    queue.settle(2, Settlement.REJECT)
    assert queue.flush() == [NackFrame(2, requeue=False)]
    assert queue.unsettled() == [1]


def test_a_late_or_second_settlement_is_ignored() -> None:
    queue = _received(1, 2)
    assert queue.settle(1, Settlement.REQUEUE)  # handed back at shutdown
    assert not queue.settle(1, Settlement.ACK)  # its handler finished after all
    assert queue.flush() == [NackFrame(1, requeue=True)]
    assert not queue.settle(1, Settlement.ACK)  # long gone from the channel
    assert not queue.settle(7, Settlement.ACK)  # never delivered on this channel
    assert queue.flush() == []
    assert queue.unsettled() == [2]


def test_a_new_channel_starts_a_new_queue_and_old_tags_mean_nothing_there() -> None:
    before = _received(1, 2, 3)
    before.settle(1, Settlement.ACK)
    after = AckQueue()  # reconnected: the broker numbers deliveries from 1 again
    after.received(1)
    assert not after.settle(2, Settlement.ACK)
    after.settle(1, Settlement.ACK)
    assert after.flush() == [AckFrame(1, multiple=False)]
