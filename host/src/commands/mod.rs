//! One file per command of the binary; each takes its settings and runs the use
//! cases (or the server) with them.

mod eval;
mod inspect;
mod policy;
mod rekey;
mod replay;
mod serve;
mod verify;

pub use eval::eval;
pub use inspect::inspect;
pub use policy::policy;
pub use rekey::rekey;
pub use replay::replay;
pub use serve::serve;
pub use verify::verify;

/// The progress of a long job, drawn on stderr when it is a terminal and hidden
/// when it is piped or redirected (indicatif's stderr target), so that scripts
/// reading stdout or a log see only the results.
pub(crate) fn progress_bar(len: usize, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {what}, {{elapsed}} elapsed, eta {{eta}}");
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template).unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}
