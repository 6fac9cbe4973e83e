"""The contract between the camera side and the audit side: Avro schemas, codec, DDL."""
