//! The agent as the panel's [`NodeHandler`].

use super::node::NodeAgent;
use async_trait::async_trait;
use nexus_core::transport::{NodeCommand, NodeHandler, NodeResponse, TransportError};

#[async_trait]
impl NodeHandler for NodeAgent {
    /// Maps each command to the method of the same name; errors become
    /// [`TransportError::Rejected`] with [`AgentError::status_code`](super::AgentError::status_code).
    async fn handle(&self, command: NodeCommand) -> Result<NodeResponse, TransportError> {
        let done = match command {
            NodeCommand::CreateServer { spec, install } => self.create_server(*spec, install).await,
            NodeCommand::DestroyServer { server } => self.destroy_server(server).await,
            NodeCommand::Power { server, action } => self.power(server, action).await,
            NodeCommand::Install { server } => self.install(server).await,
            NodeCommand::SendCommand { server, line } => self.send_command(server, &line).await,
            NodeCommand::ListServers => return Ok(NodeResponse::Servers(self.servers())),
            // Backups live in the daemon (`nexus-wings`), which answers these over HTTP.
            NodeCommand::CreateBackup { .. } | NodeCommand::RestoreBackup { .. } | NodeCommand::DeleteBackup { .. } => {
                return Err(TransportError::Rejected {
                    status: 501,
                    message: "not_implemented: backups are kept by nexus-wings, not the bare node agent".into(),
                });
            }
        };
        done.map(|()| NodeResponse::Ok).map_err(|e| e.to_transport())
    }
}
