"""The device gateway: an HTTPS endpoint relaying devices' records to Kafka (faceaudit gateway)."""
