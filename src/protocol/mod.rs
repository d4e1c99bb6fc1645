//! Over the kafka-protocol crate: size-prefixed frames, record batch v2 validation, KIP-430's
//! authorized-operation fields, and THE one mapping from strand errors to Kafka error codes. Record batches stay opaque `Bytes`: we check
//! length, magic and CRC-32C and patch the base offset in place; nothing is re-encoded.

pub mod acl;
pub mod batch;
pub mod errors;
