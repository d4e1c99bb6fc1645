//! The async shell facing clients: listener, connections (framing, pipelining, bounds),
//! dispatch (ApiKey -> handler; the ApiVersions answer is generated from the table), handlers,
//! and the topic registry (durable topic metadata).
//!
//! PLACEHOLDER: the API below is the contract; the implementation is being written.

use std::net::SocketAddr;

use crate::config::BrokerConfig;
use crate::runtime::Runtime;

/// A running broker.
pub struct ServerHandle {
    local_addr: SocketAddr,
}

impl ServerHandle {
    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
    /// Stop accepting, finish in-flight requests, sync every partition, return.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        todo!("server implementation")
    }
}

/// Open the data directory (recovering every partition) and start serving on `config.listen`.
pub async fn start(_rt: Runtime, _config: BrokerConfig) -> anyhow::Result<ServerHandle> {
    todo!("server implementation")
}
