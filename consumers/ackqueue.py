"""Which acknowledgements to send, and how few frames carry them.

A delivery is settled when its decision is carried out: acknowledged, handed back (nack with
requeue) or rejected (nack without requeue, so the work queue dead-letters it). Acknowledging
one frame per delivery costs a frame and a broker round of work each; `basic_ack(multiple=True)`
settles every delivery up to a tag at once, but only if every one of them is settled: the
longest prefix of tags all settled. Nacks go alone (their requeue flag is per delivery); an ack
past an unsettled tag (a long handler still running) goes alone too, at once, so a slow
delivery never holds back the acknowledgements, and with them the prefetch, of quick ones.

Pure bookkeeping: the runtime feeds it tags as the channel delivers them and settlements as
decisions are carried out, and sends what `flush` returns on the connection thread. Tags are a
channel's: a new channel starts a new queue.
"""

from dataclasses import dataclass
from enum import Enum


class Settlement(Enum):
    """What becomes of a delivery."""

    ACK = "ack"
    REQUEUE = "requeue"
    """Handed back (shutdown): the broker delivers it again."""
    REJECT = "reject"
    """Refused: the work queue dead-letters it."""


@dataclass(frozen=True)
class AckFrame:
    """`basic_ack(tag, multiple)`."""

    tag: int
    multiple: bool


@dataclass(frozen=True)
class NackFrame:
    """`basic_nack(tag, requeue=requeue)`."""

    tag: int
    requeue: bool


Frame = AckFrame | NackFrame


@dataclass
class AckCounts:
    """Deliveries settled and the frames that carried them, over a runtime's connections (the
    I/O thread counts; others read them for figures)."""

    deliveries: int = 0
    frames: int = 0


class AckQueue:
    """The unsettled deliveries of one channel, in the order the broker delivered them."""

    def __init__(self) -> None:
        self._outstanding: dict[int, Settlement | None] = {}
        """Delivery tag -> its settlement once decided; ascending, as the broker numbers them."""

    def received(self, tag: int) -> None:
        """The channel delivered `tag`."""
        self._outstanding[tag] = None

    def settle(self, tag: int, settlement: Settlement) -> bool:
        """Decide about `tag`; False if it is not (or no longer) outstanding or already settled.

        A settlement that comes too late (the delivery was handed back at shutdown, or its
        channel is gone) is ignored: sending it would close the channel (unknown delivery tag).
        """
        if self._outstanding.get(tag, Settlement.ACK) is not None:
            return False
        self._outstanding[tag] = settlement
        return True

    def unsettled(self) -> list[int]:
        """Tags delivered and not yet decided, ascending."""
        return [tag for tag, settlement in self._outstanding.items() if settlement is None]

    def __len__(self) -> int:
        """Deliveries not yet sent a settlement."""
        return len(self._outstanding)

    def flush(self) -> list[Frame]:
        """The frames that send every settlement decided so far, in the order to send them."""
        frames: list[Frame] = [
            NackFrame(tag, settlement is Settlement.REQUEUE)
            for tag, settlement in self._outstanding.items()
            if settlement in (Settlement.REQUEUE, Settlement.REJECT)
        ]
        for frame in frames:
            del self._outstanding[frame.tag]
        # Nacked tags are gone from the broker's view before the ack below, so they may lie
        # inside the prefix a multiple ack covers.
        prefix: list[int] = []
        for tag, settlement in self._outstanding.items():
            if settlement is None:
                break
            prefix.append(tag)
        if prefix:
            frames.append(AckFrame(prefix[-1], multiple=len(prefix) > 1))
            for tag in prefix:
                del self._outstanding[tag]
        beyond = [tag for tag, settlement in self._outstanding.items() if settlement is not None]
        for tag in beyond:
            frames.append(AckFrame(tag, multiple=False))
            del self._outstanding[tag]
        return frames
