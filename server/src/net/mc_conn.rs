//! placeholder: replaced by the memcache connection loop.
use std::sync::Arc;
use crate::shared::{ClientHandle, Shared};
pub(crate) async fn run(_shared: &Arc<Shared>, _stream: tokio::net::TcpStream, _handle: &Arc<ClientHandle>) {}
