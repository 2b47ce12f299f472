//! The JSON answers of the API as types: what handlers serialize and what the
//! OpenAPI document (`openapi.rs`) describes, so the two cannot differ. Field order
//! is wire order (the original service's keys, in its order).
//! Admin answers built from use-case reports destructure them whole: a field added
//! to a report fails to compile here until the answer (and its schema) says what
//! becomes of it.
//! `public` holds the original service's and the probes' types, `admin` and
//! `reports` the admin endpoints'; all are re-exported here (`wire::X`).

mod admin;
mod public;
mod reports;

pub use admin::*;
pub use public::*;
pub use reports::*;
