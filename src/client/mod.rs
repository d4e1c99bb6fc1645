//! A small Kafka client over the kafka-protocol crate: one connection, version negotiation via
//! ApiVersions, typed request/response. Used by the CLI and the benchmark.
//! PLACEHOLDER: implemented with the client CLI work.
