//! rmcp's `ServerHandler`, written by hand rather than with `#[tool_router]`: `call_tool`
//! then receives the raw `arguments` object. The macros' `Parameters<T>` deserializes before
//! our code runs and answers bad arguments with a JSON-RPC -32602 error; here they are an
//! `isError` result carrying `CommandInputError` and the path of the bad value, as the CLI
//! would answer the same payload.

use std::sync::Arc;

use rmcp::ErrorData as McpError;
use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::calls::{self, Call};
use super::tools;

const INSTRUCTIONS: &str = "Start, track and control local background processes: dev servers, builds, test runs. \
Each task runs under its own supervisor and outlives this server; its status and output stay on disk, \
so they can be read after it ended. Every answer is JSON; an error carries details.hint (the next step) \
and details.retryable. Waiting tools block at most 50 s (timeout_s): when that runs out they answer \
TaskWaitTimedOut with the status and a log cursor, and the call can simply be made again.";

#[derive(Debug, Clone)]
pub struct Server {
    tools: Arc<Vec<Tool>>,
    /// Cancelled at stdin's EOF or the parent's death: ends every blocking call.
    shutdown: CancellationToken,
}

impl Server {
    pub fn new(shutdown: CancellationToken) -> Server {
        Server {
            tools: Arc::new(tools::all()),
            shutdown,
        }
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        // Tools must be announced: with empty capabilities some clients list no tools.
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            // rmcp's default would name rmcp itself.
            .with_server_info(Implementation::new(
                "background-tasks",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.as_ref().clone()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let call = Call {
            ctx: &context,
            shutdown: &self.shutdown,
        };
        let args = request.arguments.unwrap_or_default();
        let result = match calls::call(&call, request.name.as_ref(), args).await {
            // `structuredContent`, and the same JSON, compact, as text.
            Some(Ok(answer)) => CallToolResult::structured(answer),
            // The CLI's error object, the same way, with `isError: true`.
            Some(Err(failed)) => CallToolResult::structured_error(failed.to_json()),
            // An unknown tool is a protocol error, as the specification says.
            None => {
                return Err(McpError::invalid_params(
                    format!("unknown tool: {}", request.name),
                    Some(json!({"tool": request.name})),
                ));
            }
        };
        Ok(result.into())
    }
}
