//! TEMPORARY stand-in for `nexus_core::agent` (the contract), until the real agent lands.
#![allow(missing_docs, dead_code, clippy::unused_async)]

use async_trait::async_trait;
use nexus_core::console::ConsoleLine;
use nexus_core::ids::{NodeId, ServerId};
use nexus_core::lifecycle::{LifecycleError, LifecycleEvent};
use nexus_core::runtime::{ResourceStats, Runtime, RuntimeError};
use nexus_core::transport::{
    NodeCommand, NodeHandler, NodeResponse, PanelTransport, PowerAction, ServerSpec, ServerStatus, TransportError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub struct AgentConfig {
    pub node: NodeId,
    pub data_root: PathBuf,
    pub stop_timeout: Duration,
    pub console_replay_lines: usize,
    pub console_lines_per_second: u32,
    pub heartbeat_interval: Duration,
    pub version: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AgentSnapshot {
    pub servers: Vec<ServerSpec>,
}

#[async_trait]
pub trait AgentStateStore: Send + Sync {
    async fn load(&self) -> Result<AgentSnapshot, AgentError>;
    async fn save(&self, snapshot: &AgentSnapshot) -> Result<(), AgentError>;
}

#[async_trait]
pub trait StartPreparer: Send + Sync {
    async fn prepare(&self, spec: &ServerSpec, data_dir: &Path) -> Result<PreparedStart, AgentError>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedStart {
    pub command: Vec<String>,
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum ConsoleEvent {
    Line(ConsoleLine),
    Stats(ResourceStats),
    State(LifecycleEvent),
    Notice(String),
    Install(String),
}

pub struct ConsoleSubscription {
    pub replay: Vec<ConsoleEvent>,
    pub live: tokio::sync::broadcast::Receiver<ConsoleEvent>,
}

#[derive(Clone, Debug, Default)]
pub struct AgentMetrics {}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("unknown server {0}")]
    UnknownServer(ServerId),
    #[error("busy")]
    Busy { server: ServerId },
    #[error(transparent)]
    InvalidState(LifecycleError),
    #[error(transparent)]
    Runtime(RuntimeError),
    #[error(transparent)]
    Transport(TransportError),
    #[error("state: {0}")]
    State(String),
    #[error("prepare: {0}")]
    Prepare(String),
}

impl AgentError {
    pub fn status_code(&self) -> u16 {
        match self {
            Self::UnknownServer(_) => 404,
            Self::Busy { .. } | Self::InvalidState(_) => 409,
            Self::Prepare(_) => 422,
            _ => 500,
        }
    }
}

pub struct NodeAgent {
    config: AgentConfig,
}

impl NodeAgent {
    pub async fn start(
        config: AgentConfig,
        _runtime: Arc<dyn Runtime>,
        _panel: Arc<dyn PanelTransport>,
        _state: Arc<dyn AgentStateStore>,
        _preparer: Arc<dyn StartPreparer>,
    ) -> Result<Arc<Self>, AgentError> {
        Ok(Arc::new(Self { config }))
    }
    pub async fn create_server(&self, _spec: ServerSpec, _install: bool) -> Result<(), AgentError> {
        Err(AgentError::State("stub".into()))
    }
    pub async fn destroy_server(&self, server: ServerId) -> Result<(), AgentError> {
        Err(AgentError::UnknownServer(server))
    }
    pub async fn power(&self, server: ServerId, _action: PowerAction) -> Result<(), AgentError> {
        Err(AgentError::UnknownServer(server))
    }
    pub async fn install(&self, server: ServerId) -> Result<(), AgentError> {
        Err(AgentError::UnknownServer(server))
    }
    pub async fn send_command(&self, server: ServerId, _line: &str) -> Result<(), AgentError> {
        Err(AgentError::UnknownServer(server))
    }
    pub async fn console(&self, server: ServerId) -> Result<ConsoleSubscription, AgentError> {
        Err(AgentError::UnknownServer(server))
    }
    pub async fn install_log(&self, server: ServerId) -> Result<String, AgentError> {
        Err(AgentError::UnknownServer(server))
    }
    pub fn servers(&self) -> Vec<ServerStatus> {
        Vec::new()
    }
    pub fn spec(&self, _server: ServerId) -> Option<ServerSpec> {
        None
    }
    pub fn data_dir(&self, server: ServerId) -> PathBuf {
        self.config.data_root.join(server.to_string())
    }
    pub fn metrics(&self) -> AgentMetrics {
        AgentMetrics::default()
    }
    pub async fn shutdown(&self) {}
}

#[async_trait]
impl NodeHandler for NodeAgent {
    async fn handle(&self, _command: NodeCommand) -> Result<NodeResponse, TransportError> {
        Ok(NodeResponse::Ok)
    }
}
