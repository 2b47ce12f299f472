//! The HTTP API, wire-compatible with the original service: parse and validate
//! the request, call a use case, answer in the endpoint's JSON shape.
//! `ApiError::reason_and_status` (`error`) is the one place errors become HTTP (the
//! reason code is the use case's, `UseCaseError::code`; the status is chosen here).
//! `router` assembles the routes and their layers (`middleware`, `limits`); each
//! resource's handlers are in their own module (`verification`, `health`,
//! `stats_page`, `openapi`, `demo`). `server` holds the accept loop and `run`;
//! `settings` the server's flags. Admin endpoints (reset, policy management, audit)
//! are in `admin`, behind one gate.

mod access;
mod admin;
mod answer;
mod client_slots;
mod connections;
mod demo;
mod error;
mod health;
pub mod limits;
mod middleware;
pub mod openapi;
mod router;
mod server;
mod settings;
mod stats_page;
mod upload;
mod verification;
pub mod wire;

pub use access::AdminAccess;
pub use error::{ApiError, RequestError};
pub use middleware::REQUEST_ID_HEADER;
pub use router::{HttpLimits, router, router_with_limits};
pub use server::run;
pub use settings::ServerConfig;
