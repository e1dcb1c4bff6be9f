"""One connection to the broker on pika's SelectConnection, run by one I/O thread.

The thread that calls `run` owns the connection and its channel: it reads and writes frames,
keeps heartbeats, and is the only one to call the channel. Others hand it work with
`call_soon_threadsafe`. Nothing here waits for the broker: publishes are confirmed
asynchronously (consumers/confirms.py: a callback per publish, told once what became of it),
and settlements go out as few frames as the broker allows, once per turn of the loop
(consumers/ackqueue.py).

    open connection -> channel -> confirm mode -> prefetch -> consume each queue -> consuming
    a broker cancel, a closed channel or a lost connection: the loop ends; `run` returns why

What to do with deliveries, when to stop and how to drain are the runtime's (consumers/runtime.py).
"""

import functools
import logging
import threading
from collections.abc import Callable, Sequence

import pika
import pika.channel
import pika.exceptions
import pika.frame
from pika.adapters.select_connection import SelectConnection
from pika.spec import Basic, BasicProperties

from consumers.ackqueue import AckCounts, AckFrame, AckQueue, Settlement
from consumers.confirms import Confirms, OnOutcome

log = logging.getLogger(__name__)

OnMessage = Callable[[str, Basic.Deliver, BasicProperties, bytes], None]
"""(queue, method, properties, body) of a delivery, called on the I/O thread."""


class Link:
    """A consuming, publishing connection; every method but `call_soon_threadsafe` is the I/O
    thread's."""

    def __init__(
        self,
        parameters: pika.ConnectionParameters,
        *,
        queues: Sequence[str],
        prefetch: int,
        on_message: OnMessage,
        on_consuming: Callable[[], None],
        on_tick: Callable[[], None],
        tick_seconds: float,
        counts: AckCounts | None = None,
    ) -> None:
        self.parameters = parameters
        self.queues = tuple(queues)
        self.prefetch = prefetch
        self._on_message = on_message
        self._on_consuming = on_consuming
        self._on_tick = on_tick
        self._tick_seconds = tick_seconds
        self.acks = AckQueue()
        self.counts = counts if counts is not None else AckCounts()
        self.confirms = Confirms()
        self.lost: BaseException | str | None = None
        """Why the connection ended, unless it was closed on purpose."""
        self._connection: SelectConnection | None = None
        self._channel: pika.channel.Channel | None = None
        self._consumer_tags: list[str] = []
        self._started = 0
        self._consuming = False
        self._cancelling = False
        self._closing = False
        self._flush_due = False
        self._guard = threading.Lock()
        self._ended = False

    # -- any thread ----------------------------------------------------------------------

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> bool:
        """Have the I/O thread call `callback`; False once the connection is over."""
        with self._guard:
            if self._ended or self._connection is None:
                return False
            self._connection.ioloop.add_callback_threadsafe(callback)
            return True

    # -- the I/O thread --------------------------------------------------------------------

    def run(self) -> None:
        """Connect and serve until the connection ends; then every unanswered publish is lost."""
        with self._guard:
            self._connection = SelectConnection(
                self.parameters,
                on_open_callback=self._opened,
                on_open_error_callback=self._open_failed,
                on_close_callback=self._closed,
            )
        ioloop = self._connection.ioloop
        try:
            ioloop.start()
        except pika.exceptions.AMQPError as error:
            # A channel call failed inside a callback: the connection is no good any more.
            self.lost = error
            self._close_after_failure()
        except BaseException:
            self._close_after_failure()
            raise
        finally:
            with self._guard:
                self._ended = True
            self._channel = None
            self.confirms.lost()
            ioloop.close()

    def _close_after_failure(self) -> None:
        """Close the connection after an exception ended the loop, running it until closed."""
        connection = self._connection
        self._closing = True
        if connection is None or connection.is_closed:
            return
        if not connection.is_closing:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                return
        connection.ioloop.start()  # `_closed` stops it

    @property
    def usable(self) -> bool:
        """Whether the channel takes publishes and settlements."""
        return self._channel is not None and self._channel.is_open and not self._closing

    def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: BasicProperties,
        on_outcome: OnOutcome,
    ) -> None:
        """Publish `mandatory`; `on_outcome` learns what became of it. Raises if the channel is
        gone (pika.exceptions.AMQPChannelError or AMQPConnectionError)."""
        if self._channel is None or self._closing:
            raise pika.exceptions.ChannelWrongStateError("the link is closing")
        self._channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        self.confirms.published((exchange, routing_key, properties.message_id), on_outcome)

    def settle(self, tag: int, settlement: Settlement) -> None:
        """Settle a delivery; the frame goes out at the end of this turn of the loop."""
        if self.acks.settle(tag, settlement) and not self._flush_due:
            self._flush_due = True
            if self._connection is not None:
                # A timer due now runs after this turn's callbacks: one flush for all of them.
                self._connection.ioloop.call_later(0, self.flush)

    def flush(self) -> None:
        """Send the settlements decided so far."""
        self._flush_due = False
        channel = self._channel
        if channel is None or not channel.is_open:
            return  # the broker delivers what was unsettled again
        before = len(self.acks)
        frames = self.acks.flush()
        self.counts.deliveries += before - len(self.acks)
        self.counts.frames += len(frames)
        for frame in frames:
            if isinstance(frame, AckFrame):
                channel.basic_ack(frame.tag, multiple=frame.multiple)
            else:
                channel.basic_nack(frame.tag, requeue=frame.requeue)

    def cancel_consuming(self) -> None:
        """Take no more deliveries (those in flight stay to be settled)."""
        self._cancelling = True
        if self._channel is not None and self._channel.is_open:
            for tag in self._consumer_tags:
                self._channel.basic_cancel(tag)

    def close(self) -> None:
        """Send what is settled and close the connection on purpose; `run` then returns."""
        if self._closing:
            return
        self.flush()
        self._closing = True
        if self._connection is not None and not (
            self._connection.is_closing or self._connection.is_closed
        ):
            self._connection.close()

    def _lose(self, why: BaseException | str) -> None:
        """The broker ended consuming: close, so the runtime reconnects."""
        if not self._closing:
            self.lost = why
        self._closing = True
        if self._connection is not None and not (
            self._connection.is_closing or self._connection.is_closed
        ):
            self._connection.close()

    # -- pika's callbacks --------------------------------------------------------------------

    def _opened(self, connection: SelectConnection) -> None:
        self._tick()
        connection.channel(on_open_callback=self._channel_opened)

    def _open_failed(self, connection: SelectConnection, error: BaseException) -> None:
        self.lost = error
        connection.ioloop.stop()

    def _closed(self, connection: SelectConnection, reason: BaseException) -> None:
        if not self._closing:
            self.lost = reason
        self._closing = True
        connection.ioloop.stop()

    def _channel_opened(self, channel: pika.channel.Channel) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._channel_closed)
        channel.add_on_cancel_callback(self._cancelled)
        channel.add_on_return_callback(self._returned)
        channel.confirm_delivery(self._answered, callback=self._confirming)

    def _confirming(self, _frame: object) -> None:
        if self._channel is not None:
            self._channel.basic_qos(prefetch_count=self.prefetch, callback=self._qos_set)

    def _qos_set(self, _frame: object) -> None:
        channel = self._channel
        if channel is None:
            return
        for queue in self.queues:
            tag = channel.basic_consume(
                queue,
                functools.partial(self._delivered, queue),
                callback=self._consume_started,
            )
            self._consumer_tags.append(tag)

    def _consume_started(self, frame: pika.frame.Method) -> None:
        if self._cancelling and self._channel is not None:
            self._channel.basic_cancel(frame.method.consumer_tag)
            return
        self._started += 1
        if self._started == len(self.queues) and not self._consuming:
            self._consuming = True
            self._on_consuming()

    def _delivered(
        self,
        queue: str,
        _channel: pika.channel.Channel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        self.acks.received(method.delivery_tag)
        self._on_message(queue, method, properties, body)

    def _answered(self, frame: pika.frame.Method) -> None:
        method = frame.method
        self.confirms.answered(
            method.delivery_tag,
            multiple=bool(method.multiple),
            acked=isinstance(method, Basic.Ack),
        )

    def _returned(
        self,
        _channel: pika.channel.Channel,
        method: Basic.Return,
        properties: BasicProperties,
        _body: bytes,
    ) -> None:
        self.confirms.returned(
            (str(method.exchange or ""), str(method.routing_key or ""), properties.message_id)
        )

    def _cancelled(self, _frame: object) -> None:
        if not self._cancelling:
            self._lose("the broker cancelled consuming")

    def _channel_closed(self, _channel: pika.channel.Channel, reason: BaseException) -> None:
        self._channel = None
        self._lose(reason)

    def _tick(self) -> None:
        if self._connection is None or self._connection.is_closed:
            return
        self._on_tick()
        self._connection.ioloop.call_later(self._tick_seconds, self._tick)
