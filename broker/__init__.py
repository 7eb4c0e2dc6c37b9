"""Local brokers the project starts: the embedded Tansu broker (and Apache Kafka, natively)."""
