//! The process around the controllers: settings, leader election, the HTTP endpoints (metrics,
//! health probes), logging, metrics and the supervision of every long-running task.

pub mod aws_sdk;
pub mod http_server;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod settings;
pub mod supervisor;
