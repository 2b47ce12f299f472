//! In-memory exact 1:N search over enrolled face templates (issue 20).
