"""RabbitMQ side of the service: topology, delivery, ack/retry/dead-letter, publishing, shutdown."""
